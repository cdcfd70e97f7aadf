//! End-to-end test harness for Twinset: starts the real `twinset` binary as separate
//! OS processes (one control plane, N agents) on loopback, runs CLI verbs against
//! them, and cleans every process up — including pod processes — when a test ends.
//!
//! The binary is not built by the tests: build it first (the README's test command
//! does, `cargo build -p twinset && cargo nextest run --workspace`). The harness uses
//! `$TWINSET_BIN` if set, else `target/debug/twinset` of this workspace.
//!
//! Tests wait on conditions with deadlines ([`wait_for`]), never on fixed sleeps;
//! the few negative checks ("this stays true") use [`holds_for`] over a short window.
//!
//! For the StatefulSet: [`Options::with_dns`] gives a cluster its own DNS server
//! ([`dns`] queries it with `dig`), [`PodWatch`] follows every pod event through the
//! gRPC watch so that order can be asserted by store revision, and [`sql`] talks to
//! the guide's MariaDB replicas.
//!
//! For pod networking across machines, [`NetLab`] (as root) builds machines as network
//! namespaces on one LAN bridge with no default route, and runs the control plane and
//! the agents inside them.

pub mod binary;
pub mod cluster;
pub mod dns;
pub mod json;
pub mod kubectl;
pub mod metrics;
pub mod net;
pub mod netlab;
pub mod output;
pub mod procs;
pub mod proxy;
pub mod raw_grpc;
pub mod sandbox;
pub mod sql;
pub mod table;
pub mod target;
pub mod wait;
pub mod watch;

pub use binary::{repo_root, twinset_bin};
pub use cluster::{Cluster, Options, GUIDE_DAEMONSET, GUIDE_STATEFULSET};
pub use json::PodView;
pub use net::{free_port, ip_in_cidr};
pub use netlab::{LabOptions, NetLab};
pub use output::Output;
pub use procs::ProcId;
pub use sandbox::Sandbox;
pub use table::Table;
pub use target::Target;
pub use wait::{holds_for, timeout, wait_for};

/// The filter that leaves out the tests needing root or MariaDB (the README's paragraph
/// and `.config/nextest.toml`'s `unprivileged` profile).
pub const UNPRIVILEGED_HINT: &str =
    "run as root, or leave these tests out: cargo nextest run --workspace --profile unprivileged";

/// Fails the test unless it runs as root, saying what root is needed for: tests that
/// cannot do their work must fail, not pass without it. Such tests are named `root_*`.
pub fn require_root(needed_for: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root ({needed_for}); {UNPRIVILEGED_HINT}"
    );
}
pub use watch::{PodEvent, PodState, PodWatch};

/// A pod in `default` bound to `node` whose container `main` runs `script` with sh
/// (busybox), stopped with a 1 s grace.
pub fn shell_pod(name: &str, node: &str, script: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: default
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: [\"sh\", \"-c\", {script:?}]
"
    )
}

/// A DaemonSet of `twinset/sleep` pods in `namespace` whose container has `env` (YAML
/// list items, indented for the container: `        - name: A\n          value: "1"\n`).
pub fn sleep_daemonset(name: &str, namespace: &str, env: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {name}
  namespace: {namespace}
spec:
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: main
        image: twinset/sleep:latest
        env:
{env}"
    )
}

/// A StatefulSet of `replicas` `twinset/sleep` pods (instantly ready, no claims) in
/// `namespace`, OrderedReady, stopped with a 5 s grace.
pub fn sleep_statefulset(name: &str, namespace: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {name}
  namespace: {namespace}
spec:
  serviceName: {name}
  replicas: {replicas}
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: sleep
        image: twinset/sleep:latest
"
    )
}

/// The end of a StatefulSet manifest whose last container (indented as in
/// [`sleep_statefulset`]) mounts a claim `data` of 10Mi at /data: its volumeMounts and
/// the set's volumeClaimTemplates.
pub const DATA_CLAIM_TAIL: &str = "        volumeMounts:
        - name: data
          mountPath: /data
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [\"ReadWriteOnce\"]
      resources:
        requests:
          storage: 10Mi
";

/// [`sleep_statefulset`] with the claim `data` of [`DATA_CLAIM_TAIL`] on each pod.
pub fn sleep_statefulset_with_claim(name: &str, namespace: &str, replicas: u32) -> String {
    format!(
        "{}{DATA_CLAIM_TAIL}",
        sleep_statefulset(name, namespace, replicas)
    )
}

/// The guide's StatefulSet reduced to what validation looks at (no claims, no probes):
/// the base the bad-input tests edit.
pub const MINIMAL_STS: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: mysql-db
  namespace: database
spec:
  serviceName: \"mysql\"
  replicas: 3
  selector:
    matchLabels:
      app: mysql
  template:
    metadata:
      labels:
        app: mysql
    spec:
      containers:
      - name: mysql
        image: mysql:8
";
