//! `twinset drain NODE…`: kubectl drain's behaviour and words. Cordons each node, then
//! evicts its pods (through the Evict call, so a StatefulSet's implicit disruption
//! budget applies; `--disable-eviction` deletes instead) and waits until each is gone
//! (NotFound, or a new pod of the same name). A StatefulSet's pods go one at a time,
//! highest ordinal first; everything else at once. A refused eviction (429) is retried
//! every 5 s, as kubectl does. Which pods go, and the warnings and errors, are
//! [`filter`]'s (pure); this module does the calls and prints.

mod filter;

use super::{get_object, list, Ctx};
use crate::args::DrainArgs;
use crate::client::Client;
use crate::report::{outln, AlreadyReported};
use anyhow::bail;
use filter::{aggregate, eviction_groups, go_duration, Options, PodDeleteList};
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use twinset_proto::kinds::Kind;
use twinset_proto::v1::{DeleteRequest, EvictRequest, Object, Pod};

/// kubectl's pause before asking again after an eviction the budget refused.
const EVICT_RETRY_DELAY: Duration = Duration::from_secs(5);

/// How one drain runs (from the flags).
struct Drainer {
    opts: Options,
    pod_selector: String,
    /// `--grace-period` when 0 or more.
    grace: Option<i64>,
    /// `--timeout` (None: forever).
    timeout: Option<Duration>,
    disable_eviction: bool,
    /// `--dry-run=client`: print, change nothing.
    dry_run: bool,
}

/// A failed drain of a node, as kubectl's error values print.
#[derive(Debug)]
enum DrainError {
    /// Several errors (Go's aggregate): the filters' refusals, failed evictions.
    Aggregate(Vec<String>),
    /// One error: its message, and the line kubectl ends with when it is the only one.
    Plain { message: String, line: String },
}

impl DrainError {
    /// Go's `err.Error()`.
    fn message(&self) -> String {
        match self {
            DrainError::Aggregate(m) => aggregate(m),
            DrainError::Plain { message, .. } => message.clone(),
        }
    }
}

/// Runs `drain`.
pub async fn run(ctx: &Ctx, args: DrainArgs) -> anyhow::Result<()> {
    let dry_run = match args.dry_run.as_str() {
        "none" => false,
        "client" => true,
        "server" => bail!(
            "--dry-run=server is not supported by twinset drain (cordoning has no server-side dry run); use --dry-run=client"
        ),
        other => bail!("Invalid dry-run value ({other}). Must be \"none\", \"server\", or \"client\"."),
    };
    if twinset_proto::selector::Selector::parse(&args.pod_selector).is_err() {
        bail!("--pod-selector=<pod_selector> must be a valid label selector");
    }
    let d = Drainer {
        opts: Options {
            force: args.force,
            ignore_daemonsets: args.ignore_daemonsets,
            delete_emptydir_data: args.delete_emptydir_data,
            skip_wait_for_delete_timeout: args.skip_wait_for_delete_timeout,
        },
        pod_selector: args.pod_selector,
        grace: (args.grace_period >= 0).then_some(args.grace_period),
        timeout: (!args.timeout.is_zero()).then_some(args.timeout),
        disable_eviction: args.disable_eviction,
        dry_run,
    };
    let suffix = if dry_run { " (dry run)" } else { "" };
    let mut client = ctx.client().await?;
    // Every node is read before anything changes (a missing one fails the command).
    let mut nodes = Vec::new();
    for name in &args.nodes {
        let name = name.strip_prefix("node/").unwrap_or(name);
        nodes.push(get_object(&mut client, Kind::Node, "", name).await?);
    }
    for node in &nodes {
        let name = node.name();
        let cordoned = node
            .as_node()
            .and_then(|n| n.spec.as_ref())
            .is_some_and(|s| s.unschedulable);
        if cordoned {
            outln(&format!("node/{name} already cordoned{suffix}"));
            continue;
        }
        if !dry_run {
            if let Err(e) = super::cordon::set_unschedulable(&mut client, name, true).await {
                eprintln!("error: unable to cordon node {name:?}: {e}");
                continue;
            }
        }
        outln(&format!("node/{name} cordoned{suffix}"));
    }
    let mut fatal = Vec::new();
    let mut remaining = Vec::new();
    for node in &nodes {
        let name = node.name();
        match drain_node(&client, &d, name).await {
            Ok(()) => outln(&format!("node/{name} drained{suffix}")),
            Err(e) => {
                eprintln!(
                    "error: unable to drain node {name:?} due to error: {}, continuing command...",
                    e.message()
                );
                fatal.push(e);
                remaining.push(name.to_string());
            }
        }
    }
    if !remaining.is_empty() {
        eprintln!("There are pending nodes to be drained:");
        for n in &remaining {
            eprintln!(" {n}");
        }
    }
    // kubectl's CheckErr: one error is unwrapped (an aggregate prints one message a
    // line, a single error as `error: …`); several print one message a line.
    match fatal.as_slice() {
        [] => return Ok(()),
        [DrainError::Aggregate(messages)] => messages.iter().for_each(|m| eprintln!("{m}")),
        [DrainError::Plain { line, .. }] => eprintln!("{line}"),
        many => many.iter().for_each(|e| eprintln!("{}", e.message())),
    }
    Err(AlreadyReported.into())
}

/// The node's pods with their verdicts, and the refusals among them (kubectl's
/// `GetPodsForDeletion`); a failed read is the only error, with no list.
async fn pods_for_deletion(
    client: &Client,
    d: &Drainer,
    node: &str,
) -> (Option<PodDeleteList>, Vec<String>) {
    let mut c = client.clone();
    let field = format!("spec.nodeName={node}");
    let read = async {
        let (pods, _) = list(&mut c, Kind::Pod, "", &d.pod_selector, &field).await?;
        let (sets, _) = list(&mut c, Kind::DaemonSet, "", "", "").await?;
        anyhow::Ok((pods, sets))
    };
    let (pods, sets) = match read.await {
        Ok(r) => r,
        Err(e) => return (None, vec![e.to_string()]),
    };
    let daemonsets: BTreeSet<(String, String)> = sets
        .iter()
        .map(|s| (s.namespace().to_string(), s.name().to_string()))
        .collect();
    let exists = |ns: &str, name: &str| daemonsets.contains(&(ns.to_string(), name.to_string()));
    let now = SystemTime::now();
    let list = PodDeleteList(
        pods.into_iter()
            .filter_map(Object::into_pod)
            .map(|p| {
                let v = filter::verdict(&p, &d.opts, &exists, now);
                (p, v)
            })
            .collect(),
    );
    let errors = list.errors();
    (Some(list), errors)
}

/// Drains one cordoned node (kubectl's `deleteOrEvictPodsSimple`).
async fn drain_node(client: &Client, d: &Drainer, node: &str) -> Result<(), DrainError> {
    let (list, errors) = pods_for_deletion(client, d, node).await;
    let list = match list {
        Some(l) if errors.is_empty() => l,
        _ => return Err(DrainError::Aggregate(errors)),
    };
    let warnings = list.warnings();
    if !warnings.is_empty() {
        eprintln!("Warning: {warnings}");
    }
    let pods = list.pods();
    if d.dry_run {
        for p in &pods {
            let (ns, name) = ns_name(p);
            outln(&format!("evicting pod {ns}/{name} (dry run)"));
        }
        return Ok(());
    }
    let result = if d.disable_eviction {
        delete_pods(client, d, pods).await
    } else {
        evict_pods(client, d, pods).await
    };
    if let Err(e) = &result {
        let (pending, errors) = pods_for_deletion(client, d, node).await;
        let pending = pending.map(|l| l.pods()).unwrap_or_default();
        if !pending.is_empty() {
            eprintln!(
                "There are pending pods in node {node:?} when an error occurred: {}",
                e.message()
            );
            for p in &pending {
                eprintln!("pod/{}", ns_name(p).1);
            }
        }
        if !errors.is_empty() {
            eprint!(
                "Following errors occurred while getting the list of pods to delete:\n{}",
                aggregate(&errors)
            );
        }
    }
    result
}

fn ns_name(p: &Pod) -> (String, String) {
    let m = p.metadata.clone().unwrap_or_default();
    (m.namespace, m.name)
}

/// Evicts the pods: each StatefulSet's in sequence, the sequences side by side; the
/// errors of all of them.
async fn evict_pods(client: &Client, d: &Drainer, pods: Vec<Pod>) -> Result<(), DrainError> {
    let deadline = d.timeout.map(|t| Instant::now() + t);
    let sequences = eviction_groups(pods).into_iter().map(|group| {
        let mut c = client.clone();
        async move {
            for pod in group {
                evict_one(&mut c, d, pod, deadline).await?;
            }
            Ok::<(), String>(())
        }
    });
    let errors: Vec<String> = futures::future::join_all(sequences)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(DrainError::Aggregate(errors))
    }
}

/// Evicts one pod, retrying while the disruption budget refuses (429), then waits until
/// it is gone. A pod already gone is done, silently (as kubectl).
async fn evict_one(
    c: &mut Client,
    d: &Drainer,
    pod: Pod,
    deadline: Option<Instant>,
) -> Result<(), String> {
    let (ns, name) = ns_name(&pod);
    let mut active = pod;
    loop {
        outln(&format!("evicting pod {ns}/{name}"));
        if deadline.is_some_and(|t| Instant::now() >= t) {
            return Err(format!(
                "error when evicting pods/{name:?} -n {ns:?}: global timeout reached: {}",
                go_duration(d.timeout.unwrap_or_default())
            ));
        }
        let request = EvictRequest {
            namespace: ns.clone(),
            name: name.clone(),
            grace_period_seconds: d.grace,
            dry_run: false,
        };
        match c.cluster.evict(request).await {
            Ok(_) => break,
            Err(s) if s.code() == tonic::Code::NotFound => return Ok(()),
            Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                eprintln!(
                    "error when evicting pods/{name:?} -n {ns:?} (will retry after {}): {}",
                    go_duration(EVICT_RETRY_DELAY),
                    s.message()
                );
                // kubectl's deliberate pause before asking again.
                tokio::time::sleep(EVICT_RETRY_DELAY).await;
            }
            Err(s) => {
                return Err(format!(
                    "error when evicting pods/{name:?} -n {ns:?}: {}",
                    s.message()
                ))
            }
        }
        if let Ok(fresh) = get_object(c, Kind::Pod, &ns, &name).await {
            if let Some(p) = fresh.into_pod() {
                active = p;
            }
        }
    }
    wait_gone(c, d, &active, deadline, "evicted")
        .await
        .map_err(|e| {
            format!("error when waiting for pod {name:?} in namespace {ns:?} to terminate: {e}")
        })
}

/// Deletes the pods (`--disable-eviction`), then waits for all of them.
async fn delete_pods(client: &Client, d: &Drainer, pods: Vec<Pod>) -> Result<(), DrainError> {
    let deadline = d.timeout.map(|t| Instant::now() + t);
    let mut c = client.clone();
    for p in &pods {
        let (ns, name) = ns_name(p);
        let request = DeleteRequest {
            key: Some(crate::print::format::key(Kind::Pod, &ns, &name)),
            propagation_policy: String::new(),
            grace_period_seconds: d.grace,
        };
        match c.cluster.delete(request).await {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => {
                return Err(DrainError::Plain {
                    message: s.message().to_string(),
                    line: c.error(s).to_string(),
                })
            }
        }
    }
    let waits = pods.iter().map(|p| {
        let mut c = client.clone();
        async move { wait_gone(&mut c, d, p, deadline, "deleted").await }
    });
    let first_error = futures::future::join_all(waits)
        .await
        .into_iter()
        .find_map(Result::err);
    match first_error {
        None => Ok(()),
        Some(message) => Err(DrainError::Plain {
            line: format!("error: {message}"),
            message,
        }),
    }
}

/// Waits until `pod` is gone (NotFound, or a pod of the same name with another uid) and
/// prints `pod/NAME <verb>`; or until it has been deleted longer ago than
/// `--skip-wait-for-delete-timeout` (printing that it is skipped). Past the deadline:
/// Go's "context deadline exceeded".
async fn wait_gone(
    c: &mut Client,
    d: &Drainer,
    pod: &Pod,
    deadline: Option<Instant>,
    verb: &str,
) -> Result<(), String> {
    let (ns, name) = ns_name(pod);
    let uid = pod.metadata.clone().unwrap_or_default().uid;
    let skip = d.opts.skip_wait_for_delete_timeout;
    let mut skipped = false;
    let wait = crate::watch::until(c, Kind::Pod, &ns, &name, None, |now| {
        Ok(match now {
            None => true,
            Some(o) if o.meta().uid != uid => true,
            Some(o) => {
                let current = o.as_pod().cloned().unwrap_or_default();
                skipped = filter::deleted_long_ago(&current, skip, SystemTime::now());
                skipped
            }
        })
    });
    let outcome = match deadline {
        None => wait.await,
        Some(t) => match tokio::time::timeout_at(t, wait).await {
            Ok(r) => r,
            Err(_) => return Err("context deadline exceeded".into()),
        },
    };
    match outcome {
        Ok(()) if skipped => {
            outln(&format!(
                "pod {name:?} has DeletionTimestamp older than {skip} seconds, skipping"
            ));
            Ok(())
        }
        Ok(()) => {
            outln(&format!("pod/{name} {verb}"));
            Ok(())
        }
        Err(e) => {
            let failed = if verb == "evicted" {
                "eviction failed"
            } else {
                "deletion failed"
            };
            outln(&format!("pod/{name} {failed}"));
            Err(e.to_string())
        }
    }
}
