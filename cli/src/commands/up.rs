//! `twinset up`: a local cluster of separate OS processes of this executable —
//! one control plane and N agents, each in its own process group with its own
//! data dir and log file. Waits until every node is Ready, writes the client
//! config and cluster.json, and (unless `-d`) stops everything on Ctrl-C/SIGTERM.
use crate::args::UpArgs;
use crate::client::{Client, Target};
use crate::cluster_files::{self, ClusterFile, ProcessEntry, CONTROL_PLANE};
use crate::procs::{self, Member};
use anyhow::{bail, Context as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use twinset_node_agent::network::Mode;
use twinset_proto::kinds::Kind;

/// How long `up` lets agents and the control plane finish after SIGTERM (agents
/// stop their pods first, whose grace period defaults to 30 s) before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(40);

/// Runs `up`.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if args.pod_network == Some(Mode::Bridge) && !nix::unistd::Uid::effective().is_root() {
        bail!(
            "--pod-network bridge needs root: each pod gets a network namespace, a veth and routes"
        );
    }
    // Refused here rather than by every agent it would start.
    super::agent::restart_backoff(&args.restart_backoff)?;
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => cluster_files::default_data_dir()?,
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let data_dir = data_dir
        .canonicalize()
        .with_context(|| format!("resolving {}", data_dir.display()))?;
    refuse_running_cluster(&data_dir)?;
    let exe = std::env::current_exe().context("finding the twinset executable")?;
    let logs = data_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let signals = crate::signals::install()?;
    let shutdown = signals.shutdown.clone();

    // One table for every agent, chosen here so that `up` can say which.
    let table = args
        .image_table
        .clone()
        .or_else(super::agent::default_image_table);
    let mut members: Vec<Member> = Vec::new();
    let result = start(
        &args,
        table.as_deref(),
        &exe,
        &data_dir,
        &logs,
        &shutdown,
        &mut members,
    )
    .await;
    let target = match result {
        Ok(target) => target,
        Err(e) => {
            procs::stop_cluster(&mut members, STOP_GRACE, &signals.force).await;
            let _ = std::fs::remove_file(cluster_files::cluster_file_path(&data_dir));
            return Err(e);
        }
    };

    let server = target.server.clone();
    let config_path = cluster_files::write_client_config(&target)?;
    print_usage(
        &server,
        &data_dir,
        &config_path,
        &members,
        args.detach,
        table.as_deref(),
    );
    if args.detach {
        // The children run on in their own process groups; `twinset down` stops them.
        return Ok(());
    }

    let exited = wait_for_exit(&mut members, &shutdown).await;
    if let Some(name) = &exited {
        tracing::error!(%name, "exited unexpectedly; stopping the cluster");
    }
    eprintln!("Stopping the cluster (Ctrl-C again to stop at once)...");
    procs::stop_cluster(&mut members, STOP_GRACE, &signals.force).await;
    let _ = std::fs::remove_file(cluster_files::cluster_file_path(&data_dir));
    cluster_files::remove_client_config_for(&server);
    match exited {
        Some(name) => bail!(
            "{name} exited unexpectedly; see {}",
            logs.join(format!("{name}.log")).display()
        ),
        None => {
            eprintln!("Cluster stopped.");
            Ok(())
        }
    }
}

fn refuse_running_cluster(data_dir: &Path) -> anyhow::Result<()> {
    let Some(existing) = cluster_files::read_cluster_file(data_dir)? else {
        return Ok(());
    };
    if let Some(p) = existing
        .processes
        .iter()
        .find(|p| procs::alive(p.pid, p.start_time))
    {
        bail!(
            "a cluster is already running from {} ({} pid {}); stop it with `twinset down --data-dir {}`",
            data_dir.display(),
            p.name,
            p.pid,
            data_dir.display()
        );
    }
    std::fs::remove_file(cluster_files::cluster_file_path(data_dir))
        .context("removing a stale cluster.json")?;
    Ok(())
}

/// Starts every process and waits until all nodes are Ready; returns the server address
/// and the admin credentials.
async fn start(
    args: &UpArgs,
    table: Option<&Path>,
    exe: &Path,
    data_dir: &Path,
    logs: &Path,
    shutdown: &CancellationToken,
    members: &mut Vec<Member>,
) -> anyhow::Result<Target> {
    let deadline = Instant::now() + args.timeout;
    let cp_dir = data_dir.join(CONTROL_PLANE);
    std::fs::create_dir_all(&cp_dir).with_context(|| format!("creating {}", cp_dir.display()))?;
    // The control plane writes its bound address here once it listens; agents start only
    // then, so that they never join some other cluster already holding the port.
    let address_file = cp_dir.join("address");
    match std::fs::remove_file(&address_file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).context("removing the old address file"),
    }
    let mut cp_args: Vec<String> = vec![
        "control-plane".into(),
        "--data-dir".into(),
        cp_dir.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{}", args.port),
    ];
    if let Some(g) = args.node_grace {
        cp_args.push("--node-grace".into());
        cp_args.push(humantime::format_duration(g).to_string());
    }
    if let Some(r) = args.replace_after {
        cp_args.push("--replace-after".into());
        cp_args.push(humantime::format_duration(r).to_string());
    }
    let bridge = args.pod_network == Some(Mode::Bridge);
    cp_args.push("--cluster-cidr".into());
    cp_args.push(args.cluster_cidr.clone().unwrap_or_else(|| {
        if bridge {
            bridge_pod_range(args.port)
        } else {
            pod_range(args.port)
        }
    }));
    let dns = dns_address(args.dns_listen.as_deref(), args.port)?;
    if let Some(dns) = dns {
        cp_args.push("--dns-listen".into());
        cp_args.push(dns.to_string());
    }
    members.push(spawn(exe, CONTROL_PLANE, &cp_args, logs)?);

    let addr = wait_for_address(&address_file, members, deadline, shutdown).await?;
    // The control plane wrote its admin kubeconfig before its address.
    let admin = crate::client::read_kubeconfig(&cp_dir.join("admin.kubeconfig"))?;
    let target = Target {
        server: crate::client::https(&addr),
        credentials: admin.credentials,
    };
    let server = target.server.clone();
    // One token for this cluster's own agents, used only while `up` starts them.
    let token = join_token(&target, args.nodes).await?;

    let names: Vec<String> = (1..=args.nodes).map(|i| format!("node{i}")).collect();
    // A node counts as Ready only once its agent of this start has posted status: a data
    // dir used before holds nodes whose stored status still says Ready.
    let spawned_at = std::time::SystemTime::now();
    for name in &names {
        let mut a: Vec<String> = vec![
            "agent".into(),
            "--server".into(),
            server.clone(),
            "--token".into(),
            token.clone(),
            "--node-name".into(),
            name.clone(),
            "--data-dir".into(),
            data_dir.join(name).display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--stop-pods-on-exit".into(),
        ];
        if let Some(h) = args.heartbeat {
            a.push("--heartbeat".into());
            a.push(humantime::format_duration(h).to_string());
        }
        a.extend(super::agent::restart_backoff_flags(&args.restart_backoff));
        if let Some(t) = table {
            a.push("--image-table".into());
            a.push(t.display().to_string());
        }
        if bridge {
            a.push("--pod-network".into());
            a.push("bridge".into());
        }
        // resolv.conf cannot name a port: pods use the cluster DNS only on port 53 (in
        // bridge mode through a relay on their node's bridge).
        if let Some(dns) = dns.filter(|d| d.port() == 53) {
            a.push("--cluster-dns".into());
            a.push(dns.ip().to_string());
        }
        members.push(spawn(exe, name, &a, logs)?);
    }
    cluster_files::write_cluster_file(&ClusterFile {
        server: server.clone(),
        data_dir: data_dir.to_path_buf(),
        processes: members
            .iter()
            .map(|m| ProcessEntry {
                name: m.name.clone(),
                pid: m.pid,
                start_time: m.start_time,
                log: logs.join(format!("{}.log", m.name)),
            })
            .collect(),
    })?;
    wait_ready(
        &target, &names, spawned_at, members, deadline, shutdown, logs,
    )
    .await?;
    Ok(target)
}

/// A join token for `nodes` agents, valid for an hour (`up` starts them right away).
async fn join_token(target: &Target, nodes: u32) -> anyhow::Result<String> {
    let mut client = Client::connect(target.clone()).await?;
    let created = client
        .cluster
        .create_token(twinset_proto::v1::CreateTokenRequest {
            ttl_seconds: 3600,
            uses: i32::try_from(nodes).unwrap_or(i32::MAX),
            description: "twinset up: this cluster's own agents".into(),
            ..Default::default()
        })
        .await
        .map_err(|s| client.error(s))?;
    Ok(created.into_inner().token)
}

/// Starts `exe args` as the leader of a new process group, output to `<logs>/<name>.log`.
fn spawn(exe: &Path, name: &str, args: &[String], logs: &Path) -> anyhow::Result<Member> {
    let log_path = logs.join(format!("{name}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .with_context(|| format!("opening {}", log_path.display()))?;
    let child = tokio::process::Command::new(exe)
        .args(args)
        .env_remove("TWINSET_SERVER")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .with_context(|| format!("{name} exited at once; see {}", log_path.display()))?;
    let start_time = procs::stat(pid).map(|p| p.start_time).unwrap_or(0);
    tracing::info!(%name, pid, log = %log_path.display(), "started");
    Ok(Member {
        name: name.to_string(),
        pid,
        start_time,
        child: Some(child),
    })
}

fn check_children(members: &mut [Member], logs: &Path) -> anyhow::Result<()> {
    for m in members.iter_mut() {
        if !m.alive() {
            let log = logs.join(format!("{}.log", m.name));
            let tail = last_line(&log).unwrap_or_default();
            bail!(
                "{} exited during start-up{}; see {}",
                m.name,
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(" ({tail})")
                },
                log.display()
            );
        }
    }
    Ok(())
}

fn last_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

async fn wait_for_address(
    file: &Path,
    members: &mut [Member],
    deadline: Instant,
    shutdown: &CancellationToken,
) -> anyhow::Result<String> {
    let logs = file
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("logs"))
        .unwrap_or_else(|| PathBuf::from("."));
    loop {
        if let Ok(text) = std::fs::read_to_string(file) {
            let addr = text.trim();
            if !addr.is_empty() {
                return Ok(addr.to_string());
            }
        }
        check_children(members, &logs)?;
        if shutdown.is_cancelled() {
            bail!("interrupted");
        }
        if Instant::now() >= deadline {
            bail!(
                "the control plane did not report its address in time ({})",
                file.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// True when `node` is Ready with a heartbeat at or after `since` (whole seconds, as
/// the heartbeat time is written).
fn ready_since(node: &twinset_proto::v1::Node, since: std::time::SystemTime) -> bool {
    let since = since
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    node.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.r#type == "Ready"))
        .is_some_and(|c| {
            c.status == "True"
                && twinset_proto::time::parse(&c.last_heartbeat_time)
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .is_some_and(|t| t.as_secs() >= since)
        })
}

#[allow(clippy::too_many_arguments)]
async fn wait_ready(
    target: &Target,
    names: &[String],
    since: std::time::SystemTime,
    members: &mut [Member],
    deadline: Instant,
    shutdown: &CancellationToken,
    logs: &Path,
) -> anyhow::Result<()> {
    let mut client: Option<Client> = None;
    let mut waiting_for: Vec<String> = names.to_vec();
    loop {
        check_children(members, logs)?;
        if shutdown.is_cancelled() {
            bail!("interrupted");
        }
        if client.is_none() {
            client = Client::connect(target.clone()).await.ok();
        }
        if let Some(c) = client.as_mut() {
            match super::list(c, Kind::Node, "", "", "").await {
                Ok((nodes, _)) => {
                    waiting_for = names
                        .iter()
                        .filter(|n| {
                            !nodes.iter().any(|o| {
                                o.name() == n.as_str()
                                    && o.as_node().is_some_and(|node| ready_since(node, since))
                            })
                        })
                        .cloned()
                        .collect();
                    if waiting_for.is_empty() {
                        return Ok(());
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "listing nodes");
                    client = None;
                }
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out waiting for nodes to be Ready: {} (logs in {})",
                waiting_for.join(", "),
                logs.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for Ctrl-C/SIGTERM (None) or for a member to exit on its own (its name).
async fn wait_for_exit(members: &mut [Member], shutdown: &CancellationToken) -> Option<String> {
    let waits = members.iter_mut().filter_map(|m| {
        let name = m.name.clone();
        m.child.as_mut().map(|c| {
            Box::pin(async move {
                let _ = c.wait().await;
                name
            })
        })
    });
    let any_exit = futures::future::select_all(waits);
    tokio::select! {
        () = shutdown.cancelled() => None,
        (name, _, _) = any_exit => Some(name),
    }
}

/// The pod range for `up`: a /16 of 127.128.0.0/9 of this cluster's own, chosen by the API
/// port (or the pid when the port is picked at random), so that local clusters on one
/// machine do not hand out the same pod IPs (a client would reach the other cluster's pod);
/// ports that differ by a multiple of 128 still meet, and `--cluster-cidr` parts them.
fn pod_range(api_port: u16) -> String {
    let seed = if api_port != 0 {
        api_port
    } else {
        (std::process::id() & 0xffff) as u16
    };
    format!("127.{}.0.0/16", 128 + seed % 128)
}

/// The pod range for `up --pod-network bridge`: a /20 of 198.18.0.0/15 (RFC 2544's range
/// for lab networks, never routed on the internet, so the routes the agents add cannot
/// shadow a real network), chosen by the API port as [`pod_range`] does.
fn bridge_pod_range(api_port: u16) -> String {
    let seed = if api_port != 0 {
        api_port
    } else {
        (std::process::id() & 0xffff) as u16
    };
    let block = seed % 32;
    format!("198.{}.{}.0/20", 18 + block / 16, (block % 16) * 16)
}

/// The cluster DNS address for `up`: the flag's value, none for `none`, else a loopback
/// address of this cluster's own (127.53.H.L from the API port, or from the pid when the
/// port is picked at random), on port 53 as root and 1053 otherwise.
fn dns_address(flag: Option<&str>, api_port: u16) -> anyhow::Result<Option<std::net::SocketAddr>> {
    match flag {
        Some("none") => return Ok(None),
        Some(a) => {
            return a
                .parse()
                .map(Some)
                .with_context(|| format!("--dns-listen {a:?}: expected IP:PORT or none"))
        }
        None => {}
    }
    let seed = if api_port != 0 {
        api_port
    } else {
        (std::process::id() & 0xffff) as u16
    };
    let [hi, lo] = seed.to_be_bytes();
    let port = if nix::unistd::Uid::effective().is_root() {
        53
    } else {
        1053
    };
    Ok(Some(std::net::SocketAddr::from(([127, 53, hi, lo], port))))
}

fn print_usage(
    server: &str,
    data_dir: &Path,
    config: &Path,
    members: &[Member],
    detached: bool,
    table: Option<&Path>,
) {
    let nodes: Vec<&str> = members
        .iter()
        .filter(|m| m.name != CONTROL_PLANE)
        .map(|m| m.name.as_str())
        .collect();
    let stop = if detached {
        if data_dir == cluster_files::default_data_dir().unwrap_or_default() {
            "twinset down".to_string()
        } else {
            format!("twinset down --data-dir {}", data_dir.display())
        }
    } else {
        "press Ctrl-C".to_string()
    };
    let dns = std::fs::read_to_string(data_dir.join(CONTROL_PLANE).join("dns-address"))
        .ok()
        .and_then(|a| a.trim().parse::<std::net::SocketAddr>().ok())
        .map(|a| {
            format!(
                "  DNS:         dig @{} -p {} <pod>.<service>.<namespace>.svc.cluster.local\n",
                a.ip(),
                a.port()
            )
        })
        .unwrap_or_default();
    let text = format!(
        "Twinset cluster is up: {} node(s) Ready ({}).\n\
         \n  Server:      {server}   (saved in {})\n  \
         Data, logs:  {}   (logs in {})\n  \
         Image table: {}\n  \
         Try:         twinset get nodes\n               \
         twinset apply -f deploy/examples/daemonset.yaml\n               \
         twinset get pods -n kube-system -o wide\n  \
         Stop:        {stop}\n{dns}",
        nodes.len(),
        nodes.join(", "),
        config.display(),
        data_dir.display(),
        data_dir.join("logs").display(),
        super::agent::describe_image_table(table),
    );
    crate::report::out(&text);
}

#[cfg(test)]
mod tests {
    #[test]
    fn pod_ranges_differ_by_port_and_stay_in_the_loopback_block() {
        assert_eq!(super::pod_range(6443), "127.171.0.0/16");
        assert_eq!(super::pod_range(16443), "127.187.0.0/16");
        assert_ne!(super::pod_range(17443), super::pod_range(17444));
        for port in [1, 127, 128, 65535] {
            let r = super::pod_range(port);
            let second: u16 = r.split('.').nth(1).unwrap().parse().unwrap();
            assert!((128..=255).contains(&second), "{r}");
        }
    }
}
