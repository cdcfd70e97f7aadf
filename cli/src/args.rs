//! The command line: every verb and flag of the `twinset` binary (clap derive).
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Twinset: DaemonSets and StatefulSets on your own machines, driven like kubectl.
#[derive(Debug, Parser)]
#[command(name = "twinset", version, about, long_about = None)]
pub struct Cli {
    /// Control plane address (`https://HOST:PORT` or `HOST:PORT`). Default: the one in
    /// the client config.
    #[arg(long, global = true, env = "TWINSET_SERVER")]
    pub server: Option<String>,

    /// The client config, a kubeconfig with the server, the cluster CA and a client
    /// certificate (a control plane's `<data-dir>/admin.kubeconfig`). Default:
    /// `$TWINSET_CONFIG`, else `~/.twinset/config` (written by `twinset up`).
    #[arg(long, global = true)]
    pub config: Option<std::path::PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply manifests (YAML or JSON, multi-document) from files, a directory or stdin.
    Apply(ApplyArgs),
    /// Display one or many resources.
    Get(GetArgs),
    /// Show details of a resource.
    Describe(DescribeArgs),
    /// Delete resources by file name or by kind and name.
    Delete(DeleteArgs),
    /// Print the logs of a container in a pod.
    Logs(LogsArgs),
    /// Update the labels on a resource.
    Label(LabelArgs),
    /// Update the taints on one or more nodes.
    Taint(TaintArgs),
    /// Mark a node as unschedulable.
    Cordon(NodeNamesArgs),
    /// Mark a node as schedulable.
    Uncordon(NodeNamesArgs),
    /// Drain a node in preparation for maintenance: cordon it, then evict its pods.
    Drain(DrainArgs),
    /// Set a new size for a StatefulSet.
    Scale(ScaleArgs),
    /// Manage the rollout of a DaemonSet or StatefulSet.
    Rollout(RolloutArgs),
    /// Start a local cluster: a control plane and N agents as separate processes.
    Up(UpArgs),
    /// Stop a local cluster started with `twinset up -d`.
    Down(DownArgs),
    /// Run the control plane (API server, store, controllers).
    ControlPlane(ControlPlaneArgs),
    /// Run a node agent (runs the pods bound to its node).
    Agent(AgentArgs),
    /// Measure a scenario against a running cluster (see BENCHMARKS.md).
    Bench(BenchArgs),
    /// Manage join tokens (what a new node's agent joins the cluster with).
    Token(TokenArgs),
    /// Inspect the cluster's certificates.
    Certs(CertsArgs),
    /// Draw each DaemonSet and StatefulSet with its pods, claims and nodes (the guide's
    /// text view of the cluster).
    Tree(TreeArgs),
    /// Stop the fenced pods of a node whose agent lost the control plane (started by
    /// the agent; it outlives it).
    #[command(hide = true)]
    FenceWatchdog(FenceWatchdogArgs),
}

/// `tree`.
#[derive(Debug, Args)]
pub struct TreeArgs {
    /// Namespace (default: `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Draw the sets of every namespace, named `namespace/name`.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// `certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CertsCommand,
}

/// `certs` sub-verbs.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// List every certificate the control plane issued or holds, with its expiry.
    Check,
}

/// `token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// What to do with tokens.
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// `token` sub-verbs.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a join token and print it (the only time its secret is shown).
    Create(TokenCreateArgs),
    /// List join tokens (ids, expiry, uses left; never secrets).
    List,
    /// Delete a join token by id (the part before the dot).
    Delete(TokenDeleteArgs),
}

/// `token create`.
#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// How long the token is valid (`1h`, `30m`, `7d`); `0` for a token that never expires.
    #[arg(long, default_value = "24h")]
    pub ttl: String,
    /// How many joins the token allows (default: unlimited until it expires).
    #[arg(long)]
    pub uses: Option<u32>,
    /// The only node name the token may join as.
    #[arg(long)]
    pub node: Option<String>,
    /// What the token is for, shown by `token list`.
    #[arg(long, default_value = "")]
    pub description: String,
}

/// `token delete`.
#[derive(Debug, Args)]
pub struct TokenDeleteArgs {
    /// Token ids (or whole tokens: only the id is sent).
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The scenario: `daemonset` (apply -> every daemon pod Running and Ready),
    /// `sts-ordered` (OrderedReady per-ordinal step: pod i Ready -> pod i+1 Running) or
    /// `sts-parallel` (Parallel StatefulSet: apply -> every pod Running, pods/s) or
    /// `writes` (durable writes/s at 1, 8, 64 clients; none, idle, stalled watchers) or
    /// `pod-network` (bridge pod network setup per pod, as root, no cluster needed) or
    /// `rest` (REST Table list and watch of 1000 pods beside the same over gRPC) or
    /// `ds-rollout` (a DaemonSet rolling update across every node: total time and the
    /// controller's overhead per node) or `node-loss` (a Replace StatefulSet replica's
    /// agent SIGKILLed → the replica Ready on another node; a `twinset up -d` cluster).
    pub scenario: String,
    /// How many runs (default: 10 for daemonset, 3 for ds-rollout, 1 for the StatefulSet
    /// scenarios; for rest, 200 list rounds, and a quarter as many watch rounds).
    #[arg(long)]
    pub runs: Option<usize>,
    /// The DaemonSet manifest to apply (daemonset scenario).
    #[arg(
        short = 'f',
        long = "filename",
        default_value = "deploy/examples/daemonset.yaml"
    )]
    pub filename: String,
    /// Replicas of the StatefulSet scenarios (default: 50 for sts-ordered, 200 for
    /// sts-parallel), or pods of pod-network (default 200) and of rest (default 1000).
    #[arg(long)]
    pub replicas: Option<u32>,
    /// Namespace of the StatefulSet scenarios' set.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Give up a StatefulSet run that has not finished after this long.
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Concurrent writers of the writes scenario, one row each (comma-separated).
    #[arg(long, default_value = "1,8,64")]
    pub clients: String,
    /// How long each row of the writes scenario writes.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Idle, then stalled, Watch streams open during the writes scenario's rows.
    #[arg(long, default_value_t = 2000)]
    pub watchers: usize,
    /// maxUnavailable of the ds-rollout scenario's DaemonSet (a count or a percentage).
    #[arg(long, default_value = "10%")]
    pub max_unavailable: String,
    /// The local cluster's data dir (node-loss scenario, which kills and restarts its
    /// agents; default ~/.twinset/cluster).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl Command {
    /// Whether this is a long-running server role (logs at info by default); `up` is
    /// not: its children log to their own files and its terminal shows the summary.
    pub fn is_server_role(&self) -> bool {
        matches!(self, Command::ControlPlane(_) | Command::Agent(_))
    }
}

/// `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// File, directory (its .yaml/.yml/.json files) or `-` for stdin; repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub filenames: Vec<String>,
    /// Namespace for objects that do not name one.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// `none` (default), `server` (validate on the server, write nothing) or `client` (decode only).
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
}

/// `get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Kind (ds, sts, pods, nodes, ns, pvc, svc, events, ...), or KIND/NAME.
    pub kind: String,
    /// Names of objects to show.
    pub names: Vec<String>,
    /// Namespace (default: `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Label selector, e.g. `app=x,tier!=db`.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Field selector: `spec.nodeName=NODE` or `metadata.name=NAME`.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// Output format: wide, yaml, json or name.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Show all labels as the last column.
    #[arg(long)]
    pub show_labels: bool,
    /// Do not print headers.
    #[arg(long)]
    pub no_headers: bool,
    /// After listing, watch for changes and print them.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Keep metadata.managedFields in -o yaml/json (left out by default, as kubectl does).
    #[arg(long)]
    pub show_managed_fields: bool,
}

/// `describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// Kind (ds, sts, pod, node, pvc, svc), or KIND/NAME.
    pub kind: String,
    /// Names; all objects of the kind when omitted.
    pub names: Vec<String>,
    /// Namespace (default: `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

/// `delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Kind, or KIND/NAME (omit with -f).
    pub kind: Option<String>,
    /// Names of objects to delete.
    pub names: Vec<String>,
    /// Delete the objects in these files / directories (`-` for stdin).
    #[arg(short = 'f', long = "filename")]
    pub filenames: Vec<String>,
    /// Namespace (default: `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Delete every object of the kind matching this label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Delete every object of the kind in the namespace.
    #[arg(long)]
    pub all: bool,
    /// `background` (default): dependents go too; `orphan`: they stay; `foreground`.
    #[arg(long, default_value = "background", num_args = 0..=1, default_missing_value = "background")]
    pub cascade: String,
    /// Seconds to let pods terminate gracefully; -1 uses the pod's own value, 0 deletes at once.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// Delete at once without waiting for graceful termination (grace period 0).
    #[arg(long)]
    pub force: bool,
    /// Same as --grace-period=1.
    #[arg(long)]
    pub now: bool,
    /// Wait until the objects are gone before returning.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub wait: bool,
    /// Give up waiting after this long (e.g. 60s); 0 waits for ever.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Treat a missing object as success.
    #[arg(long)]
    pub ignore_not_found: bool,
}

/// `logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Pod name (or pod/NAME).
    pub pod: String,
    /// Container name (default: the pod's only container).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep streaming new output.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Namespace (default: `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Only the last N lines; -1 for all.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub tail: i64,
    /// The logs of the previous (terminated) instance of the container.
    #[arg(short = 'p', long)]
    pub previous: bool,
}

/// `label`.
#[derive(Debug, Args)]
pub struct LabelArgs {
    /// `KIND NAME` or `KIND/NAME`, then `key=value` to set and `key-` to remove.
    #[arg(required = true, num_args = 2..)]
    pub args: Vec<String>,
    /// Allow replacing an existing label value.
    #[arg(long)]
    pub overwrite: bool,
    /// Namespace (default: `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// `taint`.
#[derive(Debug, Args)]
pub struct TaintArgs {
    /// `node NAME` (or `node/NAME`), then `key=value:Effect` to add and `key[:Effect]-` to remove.
    #[arg(required = true, num_args = 2..)]
    pub args: Vec<String>,
    /// Allow replacing an existing taint with the same key and effect.
    #[arg(long)]
    pub overwrite: bool,
}

/// `cordon` / `uncordon`.
#[derive(Debug, Args)]
pub struct NodeNamesArgs {
    /// Node names.
    #[arg(required = true)]
    pub nodes: Vec<String>,
}

/// `drain` (kubectl's flags and defaults).
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// Node names (`NAME` or `node/NAME`).
    #[arg(required = true)]
    pub nodes: Vec<String>,
    /// Continue even if there are pods that do not declare a controller.
    #[arg(long)]
    pub force: bool,
    /// Ignore DaemonSet-managed pods.
    #[arg(long)]
    pub ignore_daemonsets: bool,
    /// Continue even if there are pods using emptyDir (local data that will be deleted
    /// when the node is drained).
    #[arg(long)]
    pub delete_emptydir_data: bool,
    /// Period of time in seconds given to each pod to terminate gracefully. If negative,
    /// the default value specified in the pod will be used.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub grace_period: i64,
    /// The length of time to wait before giving up, zero means infinite.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Label selector to filter pods on the node.
    #[arg(long, default_value = "")]
    pub pod_selector: String,
    /// Force drain to use delete, even if eviction is supported. This will bypass checking
    /// disruption budgets, use with caution.
    #[arg(long)]
    pub disable_eviction: bool,
    /// If pod DeletionTimestamp older than N seconds, skip waiting for the pod. Seconds
    /// must be greater than 0 to skip.
    #[arg(long, default_value_t = 0)]
    pub skip_wait_for_delete_timeout: i64,
    /// `none`, `client` (print what would be evicted, change nothing) or `server` (not
    /// supported).
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
}

/// `scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// `sts NAME`, `sts/NAME` or `statefulset/NAME`.
    #[arg(required = true, num_args = 1..=2)]
    pub target: Vec<String>,
    /// The new number of replicas.
    #[arg(long, required = true, allow_negative_numbers = true)]
    pub replicas: i32,
    /// Only scale if the current replica count is this.
    #[arg(long)]
    pub current_replicas: Option<i32>,
    /// Namespace (default: `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// `rollout`.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// What to do with the rollout.
    #[command(subcommand)]
    pub command: RolloutCommand,
}

/// `rollout` sub-verbs.
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Watch a rollout until it completes.
    Status(RolloutStatusArgs),
    /// List a set's revisions, or show one revision's pod template.
    History(RolloutHistoryArgs),
    /// Roll a set back to an earlier revision (by default the one before the newest).
    Undo(RolloutUndoArgs),
    /// Replace every pod of a set, its template otherwise unchanged.
    Restart(RolloutTargetArgs),
    /// Refused: only Deployments can be paused, and Twinset has none.
    Pause(RolloutTargetArgs),
    /// Refused: only Deployments can be paused, and Twinset has none.
    Resume(RolloutTargetArgs),
}

/// The sets a `rollout` verb acts on.
#[derive(Debug, Args)]
pub struct RolloutTargetArgs {
    /// `ds/NAME`, `sts/NAME` (repeatable) or `KIND NAME...`.
    #[arg(required = true)]
    pub target: Vec<String>,
    /// Namespace (default: `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// `rollout history`.
#[derive(Debug, Args)]
pub struct RolloutHistoryArgs {
    /// The sets.
    #[command(flatten)]
    pub sets: RolloutTargetArgs,
    /// Show the pod template of this revision (0: list every revision).
    #[arg(long, default_value_t = 0)]
    pub revision: i64,
}

/// `rollout undo`.
#[derive(Debug, Args)]
pub struct RolloutUndoArgs {
    /// The sets.
    #[command(flatten)]
    pub sets: RolloutTargetArgs,
    /// The revision to roll back to (0: the one before the newest).
    #[arg(long, default_value_t = 0)]
    pub to_revision: i64,
    /// `none` (default) or `client` (print the template it would roll back to); `server`
    /// is refused.
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
}

/// `rollout status`.
#[derive(Debug, Args)]
pub struct RolloutStatusArgs {
    /// `ds/NAME`, `sts/NAME` or `KIND NAME`.
    #[arg(required = true, num_args = 1..=2)]
    pub target: Vec<String>,
    /// Namespace (default: `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Keep watching until the rollout finishes (default); `--watch=false` checks once.
    #[arg(short = 'w', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub watch: bool,
    /// Give up after this long (e.g. 5m); default waits for ever.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
}

/// `up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Number of agents (nodes node1..nodeN).
    #[arg(long, default_value_t = 3)]
    pub nodes: u32,
    /// Where the cluster keeps its state (default: ~/.twinset/cluster).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Control plane port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    pub port: u16,
    /// Return once the cluster is Ready and leave it running (stop it with `twinset down`).
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// How long to wait for every node to be Ready.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Passed to the control plane: how long a silent node stays Ready.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub node_grace: Option<Duration>,
    /// Passed to the control plane: when fenced `Replace` replicas of a silent node are
    /// recreated elsewhere.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub replace_after: Option<Duration>,
    /// Passed to the agents: heartbeat interval.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub heartbeat: Option<Duration>,
    /// Passed to the agents: the restart back-off of crashing containers.
    #[command(flatten)]
    pub restart_backoff: RestartBackoffArgs,
    /// Passed to the agents: the image table file.
    #[arg(long)]
    pub image_table: Option<PathBuf>,
    /// Where the cluster DNS answers, or `none`. Default: 127.53.H.L (H.L = the API port's
    /// two bytes), port 53 as root (pods' resolv.conf then points at it), else 1053.
    #[arg(long)]
    pub dns_listen: Option<String>,
    /// The range pod IPs come from. Default: a /16 of 127.128.0.0/9 of this cluster's own
    /// (127.(128 + port % 128).0.0/16), so local clusters on other ports keep apart; with
    /// `--pod-network bridge` a /20 of 198.18.0.0/15 (the range set aside for lab networks).
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    /// Passed to the agents: `loopback` (default) or `bridge` (as root: each pod its own
    /// network namespace on a bridge of its node).
    #[arg(long, value_parser = parse_pod_network)]
    pub pod_network: Option<twinset_node_agent::network::Mode>,
}

/// How a crashing container's restarts are spaced (the kubelet's back-off): `agent`'s
/// flags, which `up` passes on to its agents.
#[derive(Debug, Clone, Default, Args)]
pub struct RestartBackoffArgs {
    /// Delay before the first restart of a crashed container; each further crash in a
    /// row doubles it (default 10s, the kubelet's).
    #[arg(long, visible_alias = "restart-delay", value_parser = humantime::parse_duration)]
    pub restart_backoff_base: Option<Duration>,
    /// Longest delay between restarts (default 5m, the kubelet's).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub restart_backoff_max: Option<Duration>,
    /// A run this long starts the delay over from the base (default 10m, the kubelet's).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub restart_backoff_reset: Option<Duration>,
}

/// `down`.
#[derive(Debug, Args)]
pub struct DownArgs {
    /// The cluster's data dir (default: ~/.twinset/cluster).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// How long to wait for processes to stop after SIGTERM before SIGKILL.
    #[arg(long, default_value = "40s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// `control-plane`.
#[derive(Debug, Args)]
pub struct ControlPlaneArgs {
    /// Where the store lives.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Address to serve the API on (port 0 picks one and writes it to <data-dir>/address).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Also serve the API in plain text on this loopback address, for debugging only:
    /// every request there acts as an administrator. Off by default; refused unless the
    /// address is loopback.
    #[arg(long, value_name = "127.0.0.1:PORT")]
    pub insecure_listen: Option<SocketAddr>,
    /// Let any TLS client read /metrics, with or without a client certificate (for a
    /// Prometheus that has none). Still TLS only. Default: administrators' certificates
    /// only (anonymous 401, other certificates 403).
    #[arg(long)]
    pub metrics_open: bool,
    /// The range node pod ranges are cut from.
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    /// Prefix length of each node's pod range.
    #[arg(long)]
    pub node_cidr_prefix: Option<u8>,
    /// How long a node may stay silent before it is marked NotReady.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub node_grace: Option<Duration>,
    /// How long a node may stay silent before the replicas of StatefulSets annotated
    /// `twinset.io/on-node-lost: Replace` that its agent fences are recreated elsewhere
    /// (default 6s; must exceed the agents' fence-after plus kill grace).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub replace_after: Option<Duration>,
    /// How many recent changes watchers can resume from.
    #[arg(long)]
    pub watch_history: Option<usize>,
    /// The most bytes that history may hold (a quantity: 64Mi, 512Ki); the oldest
    /// changes go first when either bound is reached.
    #[arg(long, value_parser = parse_size)]
    pub watch_history_bytes: Option<u64>,
    /// The largest object a client may apply or update (a quantity; default 1536Ki, etcd's
    /// request limit); larger ones are refused as "Request entity too large".
    #[arg(long, value_parser = parse_size)]
    pub max_request_bytes: Option<u64>,
    /// Watch streams one client connection may hold at once (default 1000); more are
    /// refused with RESOURCE_EXHAUSTED.
    #[arg(long)]
    pub max_watches_per_connection: Option<usize>,
    /// Watch streams one user (the name in its client certificate, e.g. `admin`,
    /// `system:node:node1`) may hold at once over all its connections (default 5000);
    /// more are refused with RESOURCE_EXHAUSTED. kube-apiserver has no exact equivalent:
    /// this stands in for its API priority and fairness per user.
    #[arg(long)]
    pub max_watches_per_user: Option<usize>,
    /// Watch streams the control plane serves at once (default 10000).
    #[arg(long)]
    pub max_watches: Option<usize>,
    /// Client reads (get, list) in flight at once (default 400); more are refused with
    /// "Too many requests, please try again later." Agents are never counted.
    #[arg(long, value_parser = positive_count)]
    pub max_requests_inflight: Option<usize>,
    /// Client writes (apply, update, delete, scale) in flight at once (default 200);
    /// more are refused as above. Agents are never counted.
    #[arg(long, value_parser = positive_count)]
    pub max_mutating_requests_inflight: Option<usize>,
    /// Serve cluster DNS (`<pod>.<service>.<ns>.svc.cluster.local`) on this address (UDP and TCP).
    #[arg(long)]
    pub dns_listen: Option<SocketAddr>,
    /// Route every node's pod range via its node IP on this machine too (as root; what
    /// bridge-mode agents do), so that pods reach the control plane's DNS server and it
    /// can answer them, with an `unreachable` route for the whole --cluster-cidr.
    #[arg(long)]
    pub pod_routes: bool,
    /// The cluster domain DNS answers for.
    #[arg(long)]
    pub cluster_domain: Option<String>,
    /// How long an Event is kept after it was last seen (e.g. 1h, 90s; default 1h).
    #[arg(long, value_parser = positive_duration)]
    pub event_ttl: Option<Duration>,
    /// How often a REST watch that allows bookmarks (`allowWatchBookmarks=true`) gets a
    /// BOOKMARK event (e.g. 1m, 5s; default 1m, as kube-apiserver).
    #[arg(long, value_parser = positive_duration)]
    pub watch_bookmark_interval: Option<Duration>,
    /// Another DNS name or IP address the server certificate covers (repeatable): the
    /// names agents and clients on other machines dial.
    #[arg(long = "tls-san", value_name = "NAME|IP")]
    pub tls_san: Vec<String>,
    /// The cluster CA's certificate, given by the operator (PEM; with --tls-ca-key). On a
    /// new data dir it is copied to `<data-dir>/pki/ca.crt` and used; a data dir that
    /// already has a CA accepts only that same one.
    #[arg(long, value_name = "FILE", requires = "tls_ca_key")]
    pub tls_ca_cert: Option<PathBuf>,
    /// The private key of --tls-ca-cert (unencrypted PKCS#8 PEM: ECDSA, Ed25519 or RSA),
    /// copied to `<data-dir>/pki/ca.key` (mode 0600).
    #[arg(long, value_name = "FILE", requires = "tls_ca_cert")]
    pub tls_ca_key: Option<PathBuf>,
    /// Lifetime of the server certificate (made at every start, renewed at about 70 % of it).
    #[arg(long, value_parser = positive_duration)]
    pub server_cert_ttl: Option<Duration>,
    /// Lifetime of the node certificates signed when agents join or renew (at about 70 % of it).
    #[arg(long, value_parser = positive_duration)]
    pub node_cert_ttl: Option<Duration>,
}

/// A count flag that must be at least 1.
fn positive_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A duration flag that must be longer than zero.
fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be greater than 0".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// `agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// A join token (`twinset token create`) for the first start: the agent checks the
    /// control plane's CA against it, then gets its node certificate, kept under
    /// `<data-dir>/pki/` for later starts (which need no token). Also `TWINSET_TOKEN`.
    #[arg(long, env = "TWINSET_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// This node's name.
    #[arg(long)]
    pub node_name: String,
    /// Where the agent keeps its state, logs and volumes.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Node labels, `k=v,k2=v2`.
    #[arg(long)]
    pub labels: Option<String>,
    /// Node taints, `k=v:Effect,k2:Effect`.
    #[arg(long)]
    pub taints: Option<String>,
    /// This node's pod IP range (default: given by the control plane).
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// Address of the daemon endpoint that serves logs.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Heartbeat interval.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub heartbeat: Option<Duration>,
    /// The restart back-off of crashing containers.
    #[command(flatten)]
    pub restart_backoff: RestartBackoffArgs,
    /// Image table (image reference → local command). Default: $TWINSET_IMAGE_TABLE, the
    /// checkout's deploy/images.yaml, /etc/twinset/images.yaml, else the table built into
    /// this binary.
    #[arg(long)]
    pub image_table: Option<PathBuf>,
    /// Largest size of a container log file before it is rotated (a quantity: 10Mi,
    /// 500Ki, 1G).
    #[arg(long, default_value = "10Mi", value_parser = parse_size)]
    pub container_log_max_size: u64,
    /// Most log files kept per container instance, the live one included (at least 2).
    #[arg(long, default_value_t = 5)]
    pub container_log_max_files: u32,
    /// Stop every pod when the agent exits. Without it (as the kubelet does) pods keep
    /// running and a restarted agent adopts them; `twinset up` passes it.
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub stop_pods_on_exit: Option<bool>,
    /// The cluster DNS server's IP (port 53) for pods' /etc/resolv.conf (as root).
    #[arg(long)]
    pub cluster_dns: Option<std::net::IpAddr>,
    /// How pods are networked: `loopback` (default: loopback addresses in the node's
    /// network namespace) or `bridge` (as root: each pod its own network namespace on a
    /// bridge of the node, pod ranges routed between nodes via their node IPs).
    #[arg(long, value_parser = parse_pod_network)]
    pub pod_network: Option<twinset_node_agent::network::Mode>,
    /// This node's IP on the network between the machines: its InternalIP, the address
    /// other nodes route its pod range via, and (unless --listen says otherwise) the
    /// daemon endpoint's address. Default: the --listen address, or the address this
    /// machine reaches the control plane from.
    #[arg(long)]
    pub node_ip: Option<std::net::Ipv4Addr>,
    /// How long the pod assignments may stay out of sync with the control plane before
    /// the node shows NotReady (reason AssignmentsNotSynced; default 10s).
    #[arg(long, value_parser = positive_duration)]
    pub sync_grace: Option<Duration>,
    /// The largest message accepted from the control plane (a quantity; default 64Mi).
    /// For tests and constrained environments only: a pod larger than it cannot be
    /// received, and the node then shows NotReady.
    #[arg(long, hide = true, value_parser = parse_size)]
    pub assignment_receive_limit: Option<u64>,
    /// Let any TLS client read /metrics on the daemon endpoint, with or without a client
    /// certificate (for a Prometheus that has none). Still TLS only. Default:
    /// administrators' and the control plane's certificates only; without this flag a
    /// client with no certificate is refused at the handshake.
    #[arg(long)]
    pub metrics_open: bool,
    /// With no acknowledged heartbeat for this long (from the send time of the last
    /// acknowledged one), stop the replicas of StatefulSets annotated
    /// `twinset.io/on-node-lost: Replace` (default 3s).
    #[arg(long, value_parser = positive_duration)]
    pub fence_after: Option<Duration>,
    /// How long a fenced pod gets between SIGTERM and SIGKILL (default 2s). Fence-after
    /// plus this must stay below the control plane's --replace-after.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub fence_grace: Option<Duration>,
}

/// `fence-watchdog` (started by the agent; not for users).
#[derive(Debug, Args)]
pub struct FenceWatchdogArgs {
    /// The agent's data dir.
    #[arg(long)]
    pub data_dir: PathBuf,
}

fn parse_pod_network(s: &str) -> Result<twinset_node_agent::network::Mode, String> {
    s.parse()
}

/// Parses a log size: a Kubernetes quantity of bytes (`10Mi`, `1G`, `4096`), above 0.
/// A positive byte size given as a Kubernetes quantity.
fn parse_size(s: &str) -> Result<u64, String> {
    let q = twinset_proto::quantity::parse(s).map_err(|e| e.to_string())?;
    let v = q.value();
    if v <= 0 {
        return Err(format!("{s:?} must be greater than 0"));
    }
    u64::try_from(v).map_err(|_| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn log_sizes_are_quantities() {
        assert_eq!(parse_size("10Mi"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("1k"), Ok(1000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn parses_guide_commands() {
        for line in [
            "twinset get ds -A",
            "twinset describe ds node-monitor -n kube-system",
            "twinset get pods -o wide -n kube-system",
            "twinset delete ds node-monitor -n kube-system",
            "twinset get sts -A",
            "twinset describe sts mysql-db -n database",
            "twinset scale sts mysql-db --replicas=4 -n database",
            "twinset rollout status sts/mysql-db -n database",
            "twinset delete ds node-monitor -n kube-system --cascade=orphan",
            "twinset label node node1 disk=ssd --overwrite",
            "twinset label node node1 disk-",
            "twinset taint node node1 dedicated=db:NoSchedule-",
            "twinset --server 127.0.0.1:1 get nodes",
            "twinset get nodes --server 127.0.0.1:1",
            "twinset agent --server 127.0.0.1:1 --node-name n --data-dir /tmp/x --heartbeat 500ms",
            "twinset control-plane --data-dir /tmp/x --listen 127.0.0.1:0 --node-grace 1s",
            "twinset up --nodes 3 -d --port 0",
            "twinset delete pod p --grace-period=0 --force --wait=false",
            "twinset scale statefulset/mysql-db --replicas 4 -n database",
            "twinset scale sts mysql-db --replicas=-1",
            "twinset scale sts mysql-db --replicas -1",
            "twinset rollout status sts/mysql-db -n database --timeout 60s",
            "twinset get pvc -o wide -n database",
            "twinset get svc -A",
            "twinset describe pvc mysql-storage-mysql-db-0 -n database",
            "twinset describe svc mysql -n database",
            "twinset delete sts mysql-db -n database",
            "twinset get pods -w -n database",
            "twinset bench sts-ordered --replicas 50",
            "twinset bench sts-parallel --replicas 200 --runs 1",
        ] {
            let argv: Vec<&str> = line.split_whitespace().collect();
            if let Err(e) = Cli::try_parse_from(&argv) {
                panic!("{line}: {e}");
            }
        }
    }

    #[test]
    fn an_operators_ca_needs_both_its_certificate_and_its_key() {
        let base = "twinset control-plane --data-dir /tmp/x";
        for alone in ["--tls-ca-cert ca.crt", "--tls-ca-key ca.key"] {
            let line = format!("{base} {alone}");
            let argv: Vec<&str> = line.split_whitespace().collect();
            let e = Cli::try_parse_from(&argv).expect_err(&line).to_string();
            let missing = if alone.contains("cert") {
                "--tls-ca-key"
            } else {
                "--tls-ca-cert"
            };
            assert!(e.contains(missing), "{line}: {e}");
        }
        let line = format!("{base} --tls-ca-cert ca.crt --tls-ca-key ca.key");
        let argv: Vec<&str> = line.split_whitespace().collect();
        let Ok(Cli {
            command: Command::ControlPlane(args),
            ..
        }) = Cli::try_parse_from(&argv)
        else {
            panic!("{line}");
        };
        let config = crate::commands::control_plane::config(args);
        assert_eq!(
            config.tls_ca,
            Some(twinset_control_plane::pki::CaFiles {
                cert: "ca.crt".into(),
                key: "ca.key".into(),
            })
        );
    }
}
