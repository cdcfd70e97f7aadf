//! One validation, on the server: every manifest of the bad-input tests
//! (bad_input.rs, sts_bad_input.rs), plus quantities and enum values the CLI used to
//! be the only one to check, is refused the same way over raw gRPC (Cluster.Apply and
//! Cluster.Update, no CLI) as through `twinset apply`: INVALID_ARGUMENT, the same
//! message, and the store revision unmoved.

use twinset_e2e::Cluster;
use twinset_proto::manifest;
use twinset_proto::v1::{self, Object};

const DS: &str = include_str!("../../deploy/examples/daemonset.yaml");
const GUIDE_STS: &str = include_str!("../../deploy/examples/statefulset.yaml");

/// The guide's StatefulSet without claims or probes, the base of the bad-input cases.
const STS: &str = twinset_e2e::MINIMAL_STS;

/// `from` replaced by `to` in `text`, checking the fixture changed.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "fixture: {from:?} not found");
    text.replace(from, to)
}

/// Every manifest of the bad-input tests, by the test that uses it, and the new cases.
fn manifests() -> Vec<(&'static str, String)> {
    vec![
        // bad_input.rs
        ("invalid_yaml", "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: [node-monitor\n  namespace: kube-system\n".into()),
        ("unknown_kind", edit(DS, "kind: DaemonSet", "kind: Deployment")),
        ("unknown_api_version", edit(DS, "apiVersion: apps/v1", "apiVersion: apps/v2")),
        ("unknown_field", edit(DS, "        image: datadog/agent:latest", "        imag: datadog/agent:latest")),
        ("name_that_is_not_dns_1123", edit(DS, "  name: node-monitor", "  name: Node_Monitor")),
        ("selector_not_matching_the_template_labels", edit(DS, "      app: node-monitor\n  template", "      app: other\n  template")),
        ("negative_replicas", edit(STS, "replicas: 3", "replicas: -1")),
        ("non_integer_replicas", edit(STS, "replicas: 3", "replicas: three")),
        ("invalid_quantity", edit(DS, "memory: \"128Mi\"", "memory: \"128Mx\"")),
        ("empty_file", String::new()),
        ("document_with_no_kind", "apiVersion: v1\nmetadata:\n  name: nokind\n".into()),
        ("one_bad_document_among_good_ones_applies_nothing", format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: would-be-created\n---\n{}",
            edit(DS, "        image: datadog/agent:latest", "        imag: datadog/agent:latest")
        )),
        // sts_bad_input.rs
        ("a_claim_template_without_a_storage_request_is_refused", edit(GUIDE_STS, "      resources:\n        requests:\n          storage: 1Gi\n", "")),
        ("a_service_name_that_is_not_dns_1123_is_refused", edit(GUIDE_STS, "serviceName: \"mysql\"", "serviceName: \"My_SQL\"")),
        // What only the CLI used to check.
        ("memory_limit_12Qi", edit(DS, "memory: \"128Mi\"", "memory: \"12Qi\"")),
        ("cpu_lots", edit(DS, "cpu: \"100m\"", "cpu: lots")),
        ("negative_cpu", edit(DS, "cpu: \"100m\"", "cpu: \"-1\"")),
        ("image_pull_policy", edit(DS, "        image: datadog/agent:latest\n", "        image: datadog/agent:latest\n        imagePullPolicy: Sometimes\n")),
        ("restart_policy_in_a_set", edit(STS, "        image: mysql:8\n", "        image: mysql:8\n      restartPolicy: Never\n")),
        ("pod_management_policy", edit(STS, "  replicas: 3\n", "  replicas: 3\n  podManagementPolicy: Random\n")),
    ]
}

/// Sends `obj` with Cluster.Apply and then Cluster.Update; both must fail.
fn over_grpc(c: &Cluster, obj: Object) -> (tonic::Status, tonic::Status) {
    c.grpc(|mut client| async move {
        let apply = client
            .apply(v1::ApplyRequest {
                object: Some(obj.clone()),
                dry_run: false,
                create_only: false,
            })
            .await;
        let update = client.update(v1::UpdateRequest { object: Some(obj) }).await;
        match (apply, update) {
            (Err(a), Err(u)) => (a, u),
            (a, u) => panic!(
                "accepted over gRPC: Apply {:?}, Update {:?}",
                a.map(|r| r.into_inner().outcome),
                u.map(|_| "updated")
            ),
        }
    })
}

#[test]
fn every_bad_manifest_is_refused_alike_over_grpc_and_through_the_cli() {
    let c = Cluster::start(0);
    let mut over_grpc_count = 0;
    for (case, text) in manifests() {
        let before = c.store_revision();
        let cli = c.apply(&text);
        let cli_err = cli.failed().trim().to_string();
        assert_eq!(cli_err.lines().count(), 1, "{case}: {cli}");
        assert_eq!(c.store_revision(), before, "{case}: the CLI wrote: {cli}");

        let objects = match manifest::decode_unvalidated(&text) {
            Ok(objects) => objects,
            Err(e) => {
                // No gRPC message can carry it: the text is not an object of a served
                // kind and shape. The CLI refuses it for that same reason.
                assert!(
                    cli_err.contains(&e.message),
                    "{case}: the CLI's error {cli_err:?} is not the decoding error {:?}",
                    e.message
                );
                continue;
            }
        };
        // What the CLI refused: the first object the validation refuses.
        let (obj, local) = objects
            .into_iter()
            .find_map(|o| twinset_proto::validate::validate(&o).err().map(|e| (o, e)))
            .unwrap_or_else(|| panic!("{case}: every object passes validation"));
        let (apply, update) = over_grpc(&c, obj);
        for (rpc, status) in [("Apply", &apply), ("Update", &update)] {
            assert_eq!(
                status.code(),
                tonic::Code::InvalidArgument,
                "{case}: {rpc}: {status:?}"
            );
            assert_eq!(
                status.message(),
                local.to_string(),
                "{case}: {rpc} is refused otherwise than by the CLI's validation"
            );
            assert!(
                cli_err.ends_with(status.message()),
                "{case}: {rpc}'s message {:?} is not the CLI's {cli_err:?}",
                status.message()
            );
        }
        assert_eq!(
            c.store_revision(),
            before,
            "{case}: the store changed after a refused gRPC Apply/Update"
        );
        over_grpc_count += 1;
    }
    assert_eq!(over_grpc_count, 12, "cases sent over gRPC");

    // An apiVersion the kind is not served in can be put in a message, too.
    let before = c.store_revision();
    let text = edit(DS, "apiVersion: apps/v1", "apiVersion: apps/v2");
    let cli_err = c.apply(&text).failed().trim().to_string();
    let mut obj = manifest::decode(DS)
        .unwrap_or_else(|e| panic!("{e}"))
        .remove(0);
    if let Some(ds) = obj.as_daemon_set_mut() {
        ds.api_version = "apps/v2".into();
    }
    let (apply, update) = over_grpc(&c, obj);
    for (rpc, status) in [("Apply", &apply), ("Update", &update)] {
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{rpc}: {status:?}"
        );
        assert!(
            cli_err.ends_with(status.message()),
            "apps/v2: {rpc}'s message {:?} is not the CLI's {cli_err:?}",
            status.message()
        );
    }
    assert_eq!(c.store_revision(), before, "apps/v2: the store changed");
}
