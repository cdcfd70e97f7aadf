//! StatefulSet bad input, one test each: a one-line error naming the problem, a
//! non-zero exit, and the store left as it was.

use serde_json::Value;
use twinset_e2e::json::{self, str_at};
use twinset_e2e::{timeout, wait_for, Cluster};
use twinset_proto::v1;

/// The guide's StatefulSet, as shipped.
const GUIDE_STS: &str = include_str!("../../deploy/examples/statefulset.yaml");

/// The guide's set with no replicas and no nodes: nothing runs, nothing is scheduled,
/// so after the first writes settle nothing changes the objects a test compares.
fn quiet_sts() -> String {
    let m = GUIDE_STS.replace("replicas: 3", "replicas: 0");
    assert!(m.contains("replicas: 0"), "fixture");
    m
}

fn one_line_error(out: &twinset_e2e::Output) -> String {
    let err = out.failed().trim().to_string();
    assert!(!err.is_empty(), "no error message: {out}");
    assert_eq!(err.lines().count(), 1, "the error is not one line: {out}");
    err
}

fn assert_mentions(err: &str, any_of: &[&str]) {
    let low = err.to_lowercase();
    assert!(
        any_of.iter().any(|m| low.contains(&m.to_lowercase())),
        "the error names none of {any_of:?}: {err}"
    );
}

/// Applies `manifest` to an empty cluster and expects a refusal mentioning each of
/// `mentions`; the store's revision must not move and no namespace appears.
fn refused_on_create(manifest: &str, mentions: &[&[&str]]) {
    let c = Cluster::start(0);
    let before = c.store_revision();
    let ns_before = c.run_ok(&["get", "ns", "-o", "name"]);
    let out = c.apply(manifest);
    let err = one_line_error(&out);
    for any_of in mentions {
        assert_mentions(&err, any_of);
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

/// Applies the quiet set and waits until the controller has seen it; returns it.
fn settled_sts(c: &Cluster) -> Value {
    c.apply(&quiet_sts()).ok();
    wait_for("the StatefulSet's status to catch up", timeout(), || {
        let s = c.get_json(&["sts", "mysql-db", "-n", "database"])?;
        let generation = json::int_at(&s, "/metadata/generation");
        let observed = json::int_at(&s, "/status/observedGeneration");
        if generation.is_some() && generation == observed {
            Ok(s)
        } else {
            Err(format!("generation {generation:?} observed {observed:?}"))
        }
    })
}

/// The set and the services of `database`, to compare before and after a refusal.
fn snapshot(c: &Cluster) -> (String, String, Value, String) {
    let s = c
        .get_json(&["sts", "mysql-db", "-n", "database"])
        .unwrap_or_else(|e| panic!("{e}"));
    let svcs = c.run_ok(&["get", "svc", "-n", "database", "-o", "name"]);
    (
        str_at(&s, "/metadata/resourceVersion").to_string(),
        str_at(&s, "/spec/serviceName").to_string(),
        s.pointer("/spec").cloned().unwrap_or(Value::Null),
        svcs,
    )
}

#[test]
fn scale_to_a_negative_number_is_refused() {
    let c = Cluster::start(0);
    settled_sts(&c);
    let before = snapshot(&c);

    let out = c.run(&[
        "scale",
        "sts",
        "mysql-db",
        "-n",
        "database",
        "--replicas=-1",
    ]);
    let err = one_line_error(&out);
    assert_mentions(&err, &["replicas"]);
    assert!(!out.stdout.contains("scaled"), "{out}");
    assert_eq!(
        snapshot(&c),
        before,
        "the set changed after a refused scale"
    );

    // The API refuses it too, whatever the client checks.
    let status = c.grpc(|mut client| async move {
        client
            .scale(v1::ScaleRequest {
                key: Some(v1::ObjectKey {
                    kind: "StatefulSet".into(),
                    namespace: "database".into(),
                    name: "mysql-db".into(),
                }),
                replicas: -1,
            })
            .await
            .err()
    });
    let status = status.expect("Scale to -1 through the API succeeded");
    assert_eq!(
        status.code(),
        tonic::Code::InvalidArgument,
        "Scale to -1: {status}"
    );
    assert!(
        status.message().contains("replicas"),
        "Scale to -1 does not name replicas: {status}"
    );
    assert_eq!(
        snapshot(&c),
        before,
        "the set changed after a refused Scale"
    );
}

#[test]
fn a_daemonset_cannot_be_scaled() {
    let c = Cluster::start(0);
    c.run_guide_daemonset(0);
    let before = c
        .get_json(&["ds", "node-monitor", "-n", "kube-system"])
        .unwrap_or_else(|e| panic!("{e}"));
    let out = c.run(&[
        "scale",
        "ds",
        "node-monitor",
        "-n",
        "kube-system",
        "--replicas=2",
    ]);
    let err = one_line_error(&out);
    assert_mentions(&err, &["node-monitor"]);
    assert_mentions(&err, &["scale"]);
    let after = c
        .get_json(&["ds", "node-monitor", "-n", "kube-system"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        str_at(&after, "/metadata/resourceVersion"),
        str_at(&before, "/metadata/resourceVersion"),
        "the DaemonSet changed"
    );
}

#[test]
fn changing_the_service_name_is_refused() {
    let c = Cluster::start(0);
    settled_sts(&c);
    let before = snapshot(&c);
    assert_eq!(before.1, "mysql");

    let changed = quiet_sts().replace("serviceName: \"mysql\"", "serviceName: \"other\"");
    assert!(changed.contains("\"other\""), "fixture");
    let out = c.apply(&changed);
    let err = one_line_error(&out);
    assert_mentions(&err, &["mysql-db"]);
    assert_mentions(&err, &["forbidden", "immutable"]);
    assert!(!out.stdout.contains("configured"), "{out}");
    assert_eq!(snapshot(&c), before, "the set or the services changed");
    let svc = c.run(&["get", "svc", "other", "-n", "database"]);
    assert!(
        !svc.success(),
        "a refused apply created Service other: {svc}"
    );
}

#[test]
fn a_claim_template_without_a_storage_request_is_refused() {
    let m = GUIDE_STS.replace(
        "      resources:\n        requests:\n          storage: 1Gi\n",
        "",
    );
    assert!(!m.contains("storage: 1Gi"), "fixture");
    refused_on_create(&m, &[&["storage"], &["mysql-db", "volumeClaimTemplates"]]);
}

#[test]
fn a_service_name_that_is_not_dns_1123_is_refused() {
    let m = GUIDE_STS.replace("serviceName: \"mysql\"", "serviceName: \"My_SQL\"");
    assert!(m.contains("My_SQL"), "fixture");
    refused_on_create(&m, &[&["My_SQL"], &["serviceName"]]);
}
