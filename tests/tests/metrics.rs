//! `/metrics` on the control plane and on each agent, read as Prometheus reads it: the
//! exposition parses strictly as Prometheus text, its counters move when a DaemonSet's
//! pods start, only readers' certificates may read it — unless `--metrics-open`.

use std::time::Duration;
use twinset_e2e::metrics::{get, Exposition};
use twinset_e2e::{Cluster, Options};
use twinset_proto::tls::{connect, connect_as, ClientCredentials};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Where a test reads metrics from: the control plane, or an agent's endpoint (whose
/// certificate names its node).
enum At<'a> {
    ControlPlane,
    Agent(&'a str),
}

/// `GET path` at `at` as the holder of `creds`: the status and body, or why no TLS
/// connection was made.
fn fetch(
    c: &Cluster,
    at: &At,
    creds: &ClientCredentials,
    path: &str,
) -> Result<(u16, String), String> {
    runtime().block_on(async {
        let channel = match at {
            At::ControlPlane => connect(&c.server(), creds).await,
            At::Agent(node) => {
                let address = format!("127.0.0.1:{}", c.daemon_port(node));
                connect_as(&address, node, creds).await
            }
        }
        .map_err(|e| format!("connect: {e}"))?;
        tokio::time::timeout(Duration::from_secs(30), get(channel, path))
            .await
            .map_err(|_| format!("GET {path}: no answer in 30 s"))?
    })
}

/// The metrics at `at`, read with `creds`, parsed strictly.
fn scrape(c: &Cluster, at: &At, creds: &ClientCredentials) -> Exposition {
    let (status, body) = fetch(c, at, creds, "/metrics").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200, "{body}");
    Exposition::parse(&body).unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{body}"))
}

fn admin(c: &Cluster) -> ClientCredentials {
    c.target().credentials
}

fn anonymous(c: &Cluster) -> ClientCredentials {
    ClientCredentials {
        ca_pem: admin(c).ca_pem,
        identity: None,
    }
}

const SLEEP_ENV: &str = "        - name: ROLE\n          value: \"metrics\"\n";

#[test]
fn metrics_parse_and_move_when_a_daemonsets_pods_start() {
    let c = Cluster::start(2);
    let admin = admin(&c);
    let cp = |c: &Cluster| scrape(c, &At::ControlPlane, &admin);
    let agent = |c: &Cluster, node| scrape(c, &At::Agent(node), &admin);

    let before = cp(&c);
    assert_eq!(
        before.sum("twinset_watches", &[]),
        0.0,
        "no client watches yet"
    );
    let agents_before: Vec<Exposition> = ["node1", "node2"].map(|n| agent(&c, n)).into();
    for family in [
        "twinset_agent_pod_start_duration_seconds",
        "twinset_agent_pods",
        "twinset_agent_container_restarts_total",
    ] {
        assert!(agents_before[0].has(family), "no {family} on node1");
    }

    let out = c.apply(&twinset_e2e::sleep_daemonset(
        "counted", "default", SLEEP_ENV,
    ));
    assert!(out.success(), "{out}");
    c.wait_running("default", "counted-", 2);
    // A REST list, counted by verb and resource.
    let (status, body) = fetch(
        &c,
        &At::ControlPlane,
        &admin,
        "/api/v1/namespaces/default/pods",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200, "{body}");

    // A client's Watch stream is counted while it is open.
    let watch = c.watch_pods();
    let after = cp(&c);
    assert_eq!(after.sum("twinset_watches", &[]), 1.0, "one watch open");
    drop(watch);
    // Every family shows once it has a series (a label set seen).
    for family in [
        "twinset_grpc_requests_total",
        "twinset_grpc_request_duration_seconds",
        "twinset_rest_requests_total",
        "twinset_rest_request_duration_seconds",
        "twinset_store_write_duration_seconds",
        "twinset_controller_queue_depth",
        "twinset_controller_reconcile_duration_seconds",
        "twinset_pods",
        "twinset_watches",
    ] {
        assert!(
            after.has(family),
            "no {family} in {:#?}",
            after.families.keys()
        );
    }
    let moved =
        |name: &str, labels: &[(&str, &str)]| (before.sum(name, labels), after.sum(name, labels));
    let (was, is) = moved("twinset_pods", &[("phase", "Running")]);
    assert_eq!(is, was + 2.0, "pods Running: {was} → {is}");
    let apply = [
        ("service", "twinset.v1.Cluster"),
        ("method", "Apply"),
        ("code", "OK"),
    ];
    let (was, is) = moved("twinset_grpc_requests_total", &apply);
    assert!(is >= was + 1.0, "Apply calls: {was} → {is}");
    let (was, is) = moved(
        "twinset_grpc_request_duration_seconds_count",
        &[("service", "twinset.v1.Cluster"), ("method", "Apply")],
    );
    assert!(is >= was + 1.0, "Apply latencies: {was} → {is}");
    let reports = [
        ("service", "twinset.v1.Nodes"),
        ("method", "ReportStatus"),
        ("code", "OK"),
    ];
    let (was, is) = moved("twinset_grpc_requests_total", &reports);
    assert!(is >= was + 2.0, "status reports: {was} → {is}");
    let list = [("verb", "list"), ("resource", "pods"), ("code", "2xx")];
    let (was, is) = moved("twinset_rest_requests_total", &list);
    assert!(is >= was + 1.0, "REST pod lists: {was} → {is}");
    let (was, is) = moved(
        "twinset_store_write_duration_seconds_count",
        &[("op", "create")],
    );
    assert!(
        is >= was + 3.0,
        "store creates (the set, two pods): {was} → {is}"
    );
    let ds = [("controller", "daemonset-controller")];
    let (was, is) = moved("twinset_controller_reconcile_duration_seconds_count", &ds);
    assert!(is >= was + 1.0, "DaemonSet reconciles: {was} → {is}");

    for (node, before) in ["node1", "node2"].iter().zip(&agents_before) {
        let after = agent(&c, node);
        let moved = |name: &str, labels: &[(&str, &str)]| {
            (before.sum(name, labels), after.sum(name, labels))
        };
        let (was, is) = moved("twinset_agent_pod_start_duration_seconds_count", &[]);
        assert_eq!(is, was + 1.0, "{node} pod starts: {was} → {is}");
        let (was, is) = moved("twinset_agent_pods", &[("phase", "Running")]);
        assert_eq!(is, was + 1.0, "{node} pods Running: {was} → {is}");
    }
}

#[test]
fn metrics_need_a_readers_certificate() {
    let c = Cluster::start(2);
    let anonymous = anonymous(&c);
    let node1 = c.node_credentials("node1");

    // The control plane: anonymous 401, a node 403.
    let (status, body) = fetch(&c, &At::ControlPlane, &anonymous, "/metrics").unwrap();
    assert_eq!((status, body.as_str()), (401, "Unauthorized"));
    let (status, body) = fetch(&c, &At::ControlPlane, &node1, "/metrics").unwrap();
    assert_eq!(
        (status, body.as_str()),
        (403, "User \"system:node:node1\" cannot get /metrics")
    );
    // An agent: another node's certificate 403; without a certificate no TLS session.
    let (status, body) = fetch(&c, &At::Agent("node2"), &node1, "/metrics").unwrap();
    assert_eq!(
        (status, body.as_str()),
        (403, "User \"system:node:node1\" cannot get /metrics")
    );
    let refused = fetch(&c, &At::Agent("node2"), &anonymous, "/metrics");
    assert!(
        refused.is_err(),
        "node2 answered a client without a certificate: {refused:?}"
    );
}

#[test]
fn metrics_open_lets_any_tls_client_read() {
    let c = Cluster::start_with(
        1,
        Options {
            control_plane_flags: vec!["--metrics-open".into()],
            agent_flags: vec!["--metrics-open".into()],
            ..Options::default()
        },
    );
    let anonymous = anonymous(&c);
    let cp = scrape(&c, &At::ControlPlane, &anonymous);
    assert!(cp.has("twinset_pods"));
    let agent = scrape(&c, &At::Agent("node1"), &anonymous);
    assert!(agent.has("twinset_agent_pods"));
    // Only /metrics opens: the API and the agent's methods still want a certificate.
    let (status, _) = fetch(&c, &At::ControlPlane, &anonymous, "/api/v1/pods").unwrap();
    assert_eq!(status, 401);
    // Still TLS only: plain text gets no answer.
    let plain = runtime().block_on(async {
        let endpoint = tonic::transport::Endpoint::from_shared(format!(
            "http://127.0.0.1:{}",
            c.daemon_port("node1")
        ))
        .map_err(|e| e.to_string())?
        .timeout(Duration::from_secs(5));
        let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
        get(channel, "/metrics").await
    });
    assert!(plain.is_err(), "node1 answered plain text: {plain:?}");
}
