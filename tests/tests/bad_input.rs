//! Bad input, one test each: a one-line error on stderr naming the problem, a
//! non-zero exit, and the store left exactly as it was (same revision).

use twinset_e2e::Cluster;

const DS: &str = include_str!("../../deploy/examples/daemonset.yaml");

/// The guide's StatefulSet without claims or probes, the base of the bad-input cases.
const STS: &str = twinset_e2e::MINIMAL_STS;

/// Applies `manifest` (from a file, or stdin when `stdin`), expects a refusal whose
/// single stderr line contains every string of `mentions` (case-insensitive), and
/// checks that nothing was written.
fn refused(manifest: &str, mentions: &[&str], stdin: bool) {
    let c = Cluster::start(0);
    let before = c.store_revision();
    let ns_before = c.run_ok(&["get", "ns", "-o", "name"]);
    let out = if stdin {
        c.run_with_stdin(&["apply", "-f", "-"], Some(manifest))
    } else {
        c.apply(manifest)
    };
    let err = out.failed().trim().to_string();
    assert!(!err.is_empty(), "no error message: {out}");
    assert_eq!(err.lines().count(), 1, "the error is not one line: {out}");
    for m in mentions {
        assert!(
            err.to_lowercase().contains(&m.to_lowercase()),
            "the error does not name {m:?}: {err}"
        );
    }
    assert!(
        !out.stdout.contains("created") && !out.stdout.contains("configured"),
        "{out}"
    );
    assert_eq!(
        c.store_revision(),
        before,
        "the store changed after a refused apply: {out}"
    );
    assert_eq!(
        c.run_ok(&["get", "ns", "-o", "name"]),
        ns_before,
        "namespaces changed"
    );
}

#[test]
fn invalid_yaml() {
    refused("apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: [node-monitor\n  namespace: kube-system\n", &["yaml"], false);
}

#[test]
fn unknown_kind() {
    let m = DS.replace("kind: DaemonSet", "kind: Deployment");
    refused(&m, &["Deployment"], true);
}

#[test]
fn unknown_api_version() {
    let m = DS.replace("apiVersion: apps/v1", "apiVersion: apps/v2");
    refused(&m, &["apps/v2"], false);
}

#[test]
fn unknown_field() {
    let m = DS.replace(
        "        image: datadog/agent:latest",
        "        imag: datadog/agent:latest",
    );
    refused(
        &m,
        &["spec.template.spec.containers[0].imag: unknown field"],
        false,
    );
}

#[test]
fn name_that_is_not_dns_1123() {
    let m = DS.replace("  name: node-monitor", "  name: Node_Monitor");
    refused(&m, &["Node_Monitor"], false);
}

#[test]
fn selector_not_matching_the_template_labels() {
    let m = DS.replace(
        "      app: node-monitor\n  template",
        "      app: other\n  template",
    );
    assert!(m.contains("app: other"), "fixture");
    refused(&m, &["selector"], false);
}

#[test]
fn negative_replicas() {
    let m = STS.replace("replicas: 3", "replicas: -1");
    refused(&m, &["replicas"], false);
}

#[test]
fn non_integer_replicas() {
    let m = STS.replace("replicas: 3", "replicas: three");
    refused(&m, &["replicas"], false);
}

#[test]
fn invalid_quantity() {
    let m = DS.replace("memory: \"128Mi\"", "memory: \"128Mx\"");
    refused(&m, &["128Mx"], false);
}

#[test]
fn empty_file() {
    refused("", &["no objects"], false);
}

#[test]
fn document_with_no_kind() {
    refused(
        "apiVersion: v1\nmetadata:\n  name: nokind\n",
        &["kind"],
        false,
    );
}

#[test]
fn one_bad_document_among_good_ones_applies_nothing() {
    let good = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: would-be-created\n";
    let bad = DS.replace(
        "        image: datadog/agent:latest",
        "        imag: datadog/agent:latest",
    );
    refused(&format!("{good}---\n{bad}"), &["imag"], false);
}

#[test]
fn missing_file_and_unreachable_server() {
    let c = Cluster::start(0);
    let out = c.run(&["apply", "-f", "/nonexistent/twinset.yaml"]);
    let err = out.failed().trim().to_string();
    assert_eq!(err.lines().count(), 1, "{out}");
    assert!(err.contains("/nonexistent/twinset.yaml"), "{out}");

    let out = c.run(&["--server", "127.0.0.1:1", "get", "pods"]);
    let err = out.failed().trim().to_string();
    assert_eq!(err.lines().count(), 1, "{out}");
    assert!(
        err.contains("127.0.0.1:1"),
        "the error does not name the server: {out}"
    );

    let out = c.run(&["get", "widgets"]);
    let err = out.failed().trim().to_string();
    assert_eq!(err.lines().count(), 1, "{out}");
    assert!(err.contains("widgets"), "{out}");
}
