//! Plain `kubectl apply -f` and `kubectl create -f` (default validation, no
//! `--validate=false`) against the OpenAPI documents the control plane generates from its
//! object model: kubectl downloads them, validates, creates; a manifest with a field the
//! schema lacks is refused with kubectl's usual line and nothing changes; `kubectl explain`
//! prints the fields. Runs the oldest and newest bundled kubectl (1.27 downloads
//! `/openapi/v2` as protobuf first; 1.33 reads `/openapi/v3` first) and the dispatcher's
//! choice for the server's version.

use twinset_e2e::kubectl::kubectl_as;
use twinset_e2e::{repo_root, Cluster, GUIDE_DAEMONSET};

const VERSIONS: [Option<&str>; 3] = [Some("1.27"), Some("1.33"), None];

/// The guide's DaemonSet named `name`, with an unknown field `spec.foo`.
fn with_unknown_field(c: &Cluster, name: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join(GUIDE_DAEMONSET)).unwrap();
    let bad = text
        .replacen("\nspec:\n", "\nspec:\n  foo: 1\n", 1)
        .replacen("name: node-monitor\n", &format!("name: {name}\n"), 1);
    assert!(
        bad.contains("  foo: 1\n") && bad.contains(&format!("name: {name}\n")),
        "{bad}"
    );
    c.write_manifest(&bad).to_string_lossy().into_owned()
}

/// Whether the served documents tell kubectl to leave field validation to the server:
/// a PATCH of daemonsets that takes `fieldValidation` (kubectl looks for nothing else).
fn server_side_validation(c: &Cluster) -> bool {
    let raw = kubectl_as(c, None, &["get", "--raw", "/openapi/v3/apis/apps/v1"]);
    let doc: serde_json::Value = serde_json::from_str(raw.ok()).unwrap();
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}"]["patch"];
    patch["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["name"] == "fieldValidation"))
}

#[test]
fn plain_kubectl_apply_validates_creates_and_refuses_unknown_fields() {
    let c = Cluster::start(1);
    let ds = repo_root().join(GUIDE_DAEMONSET);
    let ds = ds.to_string_lossy();
    let out = kubectl_as(&c, Some("1.27"), &["apply", "-f", &ds]);
    assert_eq!(out.ok().trim(), "daemonset.apps/node-monitor created");
    c.wait_running("kube-system", "node-monitor-", 1);
    for v in [Some("1.33"), None] {
        let out = kubectl_as(&c, v, &["apply", "-f", &ds]);
        assert_eq!(
            out.ok().trim(),
            "daemonset.apps/node-monitor unchanged",
            "kubectl {v:?}"
        );
    }

    let bad = with_unknown_field(&c, "with-foo");
    let server_side = server_side_validation(&c);
    let before = c.store_revision();
    for v in VERSIONS {
        for verb in ["apply", "create"] {
            let out = kubectl_as(&c, v, &[verb, "-f", &bad]);
            assert!(!out.success(), "kubectl {v:?} {verb}: {out}");
            let want = if server_side {
                format!("Error from server (BadRequest): error when creating \"{bad}\": DaemonSet in version \"v1\" cannot be handled as a DaemonSet: strict decoding error: unknown field \"spec.foo\"")
            } else {
                format!("error: error validating \"{bad}\": error validating data: ValidationError(DaemonSet.spec): unknown field \"foo\" in io.k8s.api.apps.v1.DaemonSetSpec; if you choose to ignore these errors, turn validation off with --validate=false")
            };
            assert_eq!(out.stderr.trim(), want, "kubectl {v:?} {verb}");
        }
    }
    // Past kubectl's validation, the server refuses it too, in kube-apiserver's words.
    let out = kubectl_as(
        &c,
        Some("1.33"),
        &["create", "--validate=false", "-f", &bad],
    );
    assert_eq!(
        out.stderr.trim(),
        format!("Error from server (BadRequest): error when creating \"{bad}\": DaemonSet in version \"v1\" cannot be handled as a DaemonSet: strict decoding error: unknown field \"spec.foo\"")
    );
    assert_eq!(
        c.store_revision(),
        before,
        "refused manifests change nothing"
    );
    let out = kubectl_as(&c, None, &["get", "ds", "-n", "kube-system", "-o", "name"]);
    assert_eq!(out.ok().trim(), "daemonset.apps/node-monitor");
}

#[test]
fn kubectl_explain_prints_the_fields_of_the_schema() {
    let c = Cluster::control_plane_only();
    // 1.33 explains from /openapi/v3.
    let out = kubectl_as(&c, Some("1.33"), &["explain", "daemonset.spec"]);
    let text = out.ok();
    for want in [
        "KIND:       DaemonSet",
        "VERSION:    v1",
        "FIELD: spec <DaemonSetSpec>",
        "updateStrategy\t<DaemonSetUpdateStrategy>",
        "template\t<PodTemplateSpec>",
        "minReadySeconds\t<integer>",
        "How pods are replaced when the template changes.",
    ] {
        assert!(text.contains(want), "{want:?} in {text}");
    }
    let out = kubectl_as(&c, Some("1.33"), &["explain", "pod.spec.containers.ports"]);
    let text = out.ok();
    assert!(
        text.contains("FIELD: ports <[]ContainerPort>")
            && text.contains("containerPort\t<integer>"),
        "{text}"
    );
    // 1.27 explains from /openapi/v2; the proto comments are the descriptions.
    let out = kubectl_as(
        &c,
        Some("1.27"),
        &["explain", "daemonset.spec.updateStrategy"],
    );
    let text = out.ok();
    assert!(
        text.contains("type\t<string>") && text.contains("RollingUpdate (default) or OnDelete."),
        "{text}"
    );
    let out = kubectl_as(&c, Some("1.27"), &["explain", "daemonset.spec.nope"]);
    assert!(
        !out.success() && out.stderr.contains("field \"nope\" does not exist"),
        "{out}"
    );
}
