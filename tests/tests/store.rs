//! The store seen from outside: acknowledged writes survive SIGKILL of the control
//! plane, revisions only grow (also across a restart), compare-and-swap conflicts,
//! and watches resume from a revision or say "relist". (The store's own unit tests
//! cover the same rules without processes; these check them through the real API.)

use std::collections::BTreeMap;
use std::time::Duration;

use twinset_e2e::json::{self, str_at};
use twinset_e2e::Cluster;
use twinset_proto::v1::{self, object::Kind as ObjKind, Object, ObjectKey};

fn rv(v: &serde_json::Value) -> u64 {
    let s = str_at(v, "/metadata/resourceVersion");
    s.parse()
        .unwrap_or_else(|e| panic!("resourceVersion {s:?} is not a decimal revision ({e}): {v}"))
}

fn namespaces(c: &Cluster) -> BTreeMap<String, (String, u64)> {
    let list = c.get_json(&["ns"]).expect("get ns -o json");
    json::items(&list)
        .iter()
        .map(|n| {
            (
                str_at(n, "/metadata/name").to_string(),
                (str_at(n, "/metadata/uid").to_string(), rv(n)),
            )
        })
        .collect()
}

fn ns_manifest(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {n}\n"))
        .collect::<Vec<_>>()
        .join("---\n")
}

#[test]
fn acknowledged_writes_survive_sigkill_of_the_control_plane() {
    let mut c = Cluster::start(0);
    let out = c.apply_repo_file(twinset_e2e::GUIDE_DAEMONSET);
    assert_eq!(out.ok().trim(), "daemonset.apps/node-monitor created");
    let names: Vec<String> = (0..20).map(|i| format!("durable-{i:02}")).collect();
    let out = c.apply(&ns_manifest(&names));
    let expected: Vec<String> = names
        .iter()
        .map(|n| format!("namespace/{n} created"))
        .collect();
    assert_eq!(
        out.ok().lines().map(str::to_string).collect::<Vec<_>>(),
        expected
    );
    let ds = c
        .get_json(&["ds", "node-monitor", "-n", "kube-system"])
        .expect("get ds");
    let before_ns = namespaces(&c);
    let before_rev = c.store_revision();
    // The last acknowledged write, immediately followed by SIGKILL.
    let out = c.apply(&ns_manifest(&["last-word".to_string()]));
    assert_eq!(out.ok().trim(), "namespace/last-word created");

    c.kill_control_plane();
    c.restart_control_plane();

    let ds_after = c
        .get_json(&["ds", "node-monitor", "-n", "kube-system"])
        .expect("get ds after restart");
    assert_eq!(
        str_at(&ds_after, "/metadata/uid"),
        str_at(&ds, "/metadata/uid")
    );
    assert_eq!(
        rv(&ds_after),
        rv(&ds),
        "the DaemonSet's resourceVersion changed across the restart"
    );
    let after_ns = namespaces(&c);
    for (name, v) in &before_ns {
        assert_eq!(
            after_ns.get(name),
            Some(v),
            "namespace {name} after restart"
        );
    }
    assert!(
        after_ns.contains_key("last-word"),
        "the last acknowledged write was lost: {after_ns:?}"
    );
    assert!(c.store_revision() > before_rev);

    // Revisions continue after a restart: a new write is newer than everything before.
    let max_before = after_ns
        .values()
        .map(|(_, r)| *r)
        .max()
        .unwrap_or(0)
        .max(rv(&ds_after));
    c.apply(&ns_manifest(&["after-restart".to_string()])).ok();
    let n = c.get_json(&["ns", "after-restart"]).expect("get ns");
    assert!(
        rv(&n) > max_before,
        "revision {} after restart is not above {max_before}",
        rv(&n)
    );
}

#[test]
fn every_write_gets_a_higher_revision() {
    let c = Cluster::start(0);
    let mut last = c.store_revision();
    for i in 0..5 {
        let name = format!("order-{i}");
        c.apply(&ns_manifest(std::slice::from_ref(&name))).ok();
        let r = rv(&c.get_json(&["ns", &name]).expect("get ns"));
        assert!(r > last, "revision {r} of {name} is not above {last}");
        assert_eq!(
            c.store_revision(),
            r,
            "the store revision is the last write's"
        );
        last = r;
    }
    // A delete is a write too.
    let out = c.run(&["delete", "ns", "order-4"]);
    assert_eq!(out.ok().trim(), "namespace \"order-4\" deleted");
    assert!(c.store_revision() > last);
    // Revisions of a list come back in creation order.
    let list = c.get_json(&["ns"]).expect("get ns");
    let mut order: Vec<(u64, String)> = json::items(&list)
        .iter()
        .filter(|n| {
            str_at(n, "/metadata/name").starts_with("order-")
                && str_at(n, "/metadata/name") != "order-4"
        })
        .map(|n| (rv(n), str_at(n, "/metadata/name").to_string()))
        .collect();
    order.sort();
    let names: Vec<&str> = order.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["order-0", "order-1", "order-2", "order-3"]);
}

async fn get_ns(
    client: &mut v1::cluster_client::ClusterClient<tonic::transport::Channel>,
    name: &str,
) -> Object {
    let key = ObjectKey {
        kind: "Namespace".into(),
        namespace: String::new(),
        name: name.to_string(),
    };
    client
        .get(v1::GetRequest { key: Some(key) })
        .await
        .unwrap_or_else(|e| panic!("Get namespace {name}: {e}"))
        .into_inner()
        .object
        .unwrap_or_else(|| panic!("Get namespace {name}: no object"))
}

async fn next_event(stream: &mut tonic::Streaming<v1::WatchEvent>) -> v1::WatchEvent {
    match tokio::time::timeout(Duration::from_secs(15), stream.message()).await {
        Ok(Ok(Some(ev))) => ev,
        Ok(Ok(None)) => panic!("watch stream ended"),
        Ok(Err(e)) => panic!("watch failed: {e}"),
        Err(_) => panic!("no watch event within 15s"),
    }
}

fn with_label(obj: &Object, k: &str, v: &str) -> Object {
    let mut o = obj.clone();
    if let Some(ObjKind::Namespace(ns)) = o.kind.as_mut() {
        ns.metadata
            .get_or_insert_with(Default::default)
            .labels
            .insert(k.into(), v.into());
    }
    o
}

fn labels(obj: &Object) -> BTreeMap<String, String> {
    match obj.kind.as_ref() {
        Some(ObjKind::Namespace(ns)) => ns
            .metadata
            .as_ref()
            .map(|m| m.labels.clone())
            .unwrap_or_default(),
        _ => BTreeMap::new(),
    }
}

fn resource_version(obj: &Object) -> String {
    match obj.kind.as_ref() {
        Some(ObjKind::Namespace(ns)) => ns
            .metadata
            .as_ref()
            .map(|m| m.resource_version.clone())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

#[test]
fn an_update_with_a_stale_resource_version_conflicts() {
    let c = Cluster::start(0);
    c.apply(&ns_manifest(&["cas".to_string()])).ok();
    c.grpc(|mut client| async move {
        let original = get_ns(&mut client, "cas").await;
        let r1 = resource_version(&original);
        assert!(!r1.is_empty(), "Get returned no resourceVersion");

        let first = client
            .update(v1::UpdateRequest {
                object: Some(with_label(&original, "writer", "first")),
            })
            .await
            .unwrap_or_else(|e| panic!("first update at {r1}: {e}"))
            .into_inner()
            .object
            .expect("updated object");
        let r2 = resource_version(&first);
        assert!(
            r2.parse::<u64>().unwrap_or(0) > r1.parse::<u64>().unwrap_or(u64::MAX),
            "{r2} after {r1}"
        );

        // Same base revision again: stale.
        let err = client
            .update(v1::UpdateRequest {
                object: Some(with_label(&original, "writer", "second")),
            })
            .await
            .expect_err("an update carrying a stale resourceVersion succeeded");
        assert!(
            matches!(
                err.code(),
                tonic::Code::Aborted | tonic::Code::FailedPrecondition
            ),
            "stale write: want ABORTED (conflict), got {:?}: {}",
            err.code(),
            err.message()
        );
        assert!(
            !err.message().is_empty() && !err.message().contains('\n'),
            "conflict message: {:?}",
            err.message()
        );

        let now = get_ns(&mut client, "cas").await;
        assert_eq!(
            labels(&now).get("writer").map(String::as_str),
            Some("first"),
            "the stale write changed the object"
        );
        assert_eq!(resource_version(&now), r2);
    });
}

#[test]
fn a_watch_resumes_from_a_revision_in_order() {
    let c = Cluster::start(0);
    let names: Vec<String> = ["w1", "w2", "w3"].iter().map(|s| s.to_string()).collect();
    for n in &names {
        c.apply(&ns_manifest(std::slice::from_ref(n))).ok();
    }
    let revs: Vec<u64> = names
        .iter()
        .map(|n| rv(&c.get_json(&["ns", n]).expect("get ns")))
        .collect();
    let server_dir = c.dir().to_path_buf();
    let apply_w4 = {
        let mut cmd = c.command();
        cmd.env("TWINSET_SERVER", c.server())
            .env("TWINSET_CONFIG", c.kubeconfig());
        let p = c.write_manifest(&ns_manifest(&["w4".to_string()]));
        cmd.args(["apply", "-f", &p.to_string_lossy()]);
        cmd
    };
    c.grpc(|mut client| async move {
        let req = v1::WatchRequest {
            kind: "Namespace".into(),
            resource_version: revs[0].to_string(),
            ..Default::default()
        };
        let mut stream = client
            .watch(req)
            .await
            .unwrap_or_else(|e| panic!("Watch from {}: {e}", revs[0]))
            .into_inner();
        for (i, name) in names.iter().enumerate().skip(1) {
            let ev = next_event(&mut stream).await;
            let obj = ev.object.clone().expect("event object");
            assert_eq!(
                (ev.r#type.as_str(), obj.name()),
                ("ADDED", name.as_str()),
                "event {i}: {ev:?}"
            );
            assert_eq!(
                ev.resource_version,
                revs[i].to_string(),
                "event {i} revision"
            );
        }
        // A write made while watching arrives too.
        let mut cmd = apply_w4;
        let out = cmd.output().expect("run apply");
        assert!(
            out.status.success(),
            "apply w4 ({}): {}",
            server_dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let ev = next_event(&mut stream).await;
        let obj = ev.object.clone().expect("event object");
        assert_eq!((ev.r#type.as_str(), obj.name()), ("ADDED", "w4"), "{ev:?}");
        assert!(ev.resource_version.parse::<u64>().unwrap_or(0) > revs[2]);
    });
}

#[test]
fn a_watch_from_before_a_restart_resumes_or_is_told_to_relist() {
    let mut c = Cluster::start(0);
    c.apply(&ns_manifest(&["before-a".to_string()])).ok();
    let ra = rv(&c.get_json(&["ns", "before-a"]).expect("get ns"));
    c.apply(&ns_manifest(&["before-b".to_string()])).ok();
    let rb = rv(&c.get_json(&["ns", "before-b"]).expect("get ns"));
    c.kill_control_plane();
    c.restart_control_plane();
    c.grpc(|mut client| async move {
        let req = v1::WatchRequest {
            kind: "Namespace".into(),
            resource_version: ra.to_string(),
            ..Default::default()
        };
        // Either the stream delivers before-b (history kept) or it fails OUT_OF_RANGE
        // (history lost: relist). Silence would mean a lost event.
        let first = async {
            let mut stream = client.watch(req).await?.into_inner();
            stream.message().await
        };
        match tokio::time::timeout(Duration::from_secs(15), first).await {
            Ok(Ok(Some(ev))) => {
                let obj = ev.object.clone().expect("event object");
                assert_eq!(obj.name(), "before-b", "first event after {ra}: {ev:?}");
                assert_eq!(ev.resource_version, rb.to_string());
            }
            Ok(Ok(None)) => panic!("watch stream ended without an event or an error"),
            Ok(Err(status)) => assert_eq!(
                status.code(),
                tonic::Code::OutOfRange,
                "a watch from a forgotten revision must fail OUT_OF_RANGE (relist): {status}"
            ),
            Err(_) => panic!(
                "a watch from revision {ra} (before a restart) got neither event nor error in 15s"
            ),
        }
        // Relisting works and gives a revision to watch from.
        let list = client
            .list(v1::ListRequest {
                kind: "Namespace".into(),
                ..Default::default()
            })
            .await
            .expect("relist")
            .into_inner();
        assert!(list.resource_version.parse::<u64>().unwrap_or(0) >= rb);
        assert!(list.items.iter().any(|o| o.name() == "before-b"));
    });
}
