//! podManagementPolicy Parallel against OrderedReady, and what deleting a set does to
//! its claims: whenDeleted Delete removes the claims and their directories, the
//! default Retain keeps both. Pods run `twinset/sleep:latest` (cheap).

use std::collections::BTreeMap;
use std::time::Duration;

use twinset_e2e::json::{self, str_at, PodView};
use twinset_e2e::{holds_for, timeout, wait_for, Cluster, DATA_CLAIM_TAIL};

const NS: &str = "par";

/// A set of `replicas` sleep pods with one claim template `data`; `extra_spec` lines
/// go into the set's spec, `pod_spec` lines into the pod template's spec (both indented
/// as they would be in the file).
fn sleep_set(name: &str, replicas: u32, extra_spec: &str, pod_spec: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {name}
  namespace: {NS}
spec:
  serviceName: {name}
  replicas: {replicas}
{extra_spec}  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
{pod_spec}      terminationGracePeriodSeconds: 5
      containers:
      - name: sleep
        image: twinset/sleep:latest
{DATA_CLAIM_TAIL}"
    )
}

fn claims(c: &Cluster, prefix: &str) -> Result<Vec<serde_json::Value>, String> {
    Ok(json::items(&c.get_json(&["pvc", "-n", NS])?)
        .into_iter()
        .filter(|p| str_at(p, "/metadata/name").starts_with(prefix))
        .collect())
}

fn names(pods: &[PodView]) -> Vec<String> {
    let mut n: Vec<String> = pods.iter().map(|p| p.name.clone()).collect();
    n.sort();
    n
}

fn expected(set: &str, n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|i| format!("{set}-{i}")).collect();
    v.sort();
    v
}

#[test]
fn parallel_creates_every_pod_at_once_where_ordered_ready_creates_only_the_first() {
    // The pods can never be scheduled (no node has the label), so none becomes Ready:
    // Parallel must still create all ten; OrderedReady must stop after the first.
    let c = Cluster::start(1);
    let w = c.watch_pods();
    let unschedulable = "      nodeSelector:\n        disk: none-such\n";

    c.apply(&sleep_set(
        "par",
        10,
        "  podManagementPolicy: Parallel\n",
        unschedulable,
    ))
    .ok();
    let pods = wait_for("all 10 Parallel pods to be created", timeout(), || {
        let pods = c.pods_named(NS, "par-")?;
        if names(&pods) == expected("par", 10) {
            Ok(pods)
        } else {
            Err(json::summary(&pods))
        }
    });
    for p in &pods {
        assert!(
            p.node.is_empty() && p.phase == "Pending" && !p.ready,
            "{} should be Pending and unscheduled: {}",
            p.name,
            json::summary(&pods)
        );
    }
    // Each got its claim, created before it (the pod names its claim).
    let cl = wait_for("10 claims data-par-*", timeout(), || {
        let cl = claims(&c, "data-par-")?;
        if cl.len() == 10 {
            Ok(cl)
        } else {
            Err(format!("{} claims", cl.len()))
        }
    });
    for i in 0..10 {
        let name = format!("data-par-{i}");
        assert!(
            cl.iter().any(|p| str_at(p, "/metadata/name") == name),
            "no claim {name}"
        );
    }

    c.apply(&sleep_set("ord", 10, "", unschedulable)).ok();
    wait_for("ord-0 to be created", timeout(), || {
        let pods = c.pods_named(NS, "ord-")?;
        if pods.iter().any(|p| p.name == "ord-0") {
            Ok(())
        } else {
            Err(json::summary(&pods))
        }
    });
    holds_for(
        "OrderedReady holds ord-1.. back while ord-0 is Pending",
        Duration::from_secs(2),
        || {
            let pods = c.pods_named(NS, "ord-")?;
            if names(&pods) == ["ord-0"] {
                Ok(())
            } else {
                Err(json::summary(&pods))
            }
        },
    );
    w.assert_identities_unique();
}

#[test]
fn deleting_a_parallel_set_with_when_deleted_delete_removes_claims_and_directories() {
    let c = Cluster::start(3);
    let w = c.watch_pods();
    c.apply(&sleep_set(
        "drop",
        10,
        "  podManagementPolicy: Parallel\n  persistentVolumeClaimRetentionPolicy:\n    whenDeleted: Delete\n",
        "",
    ))
    .ok();
    let pods = c.wait_sts_ready(NS, "drop", 10);

    // Spread: the scheduler prefers the node with the fewest pods of the set.
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &pods {
        *per_node.entry(p.node.as_str()).or_default() += 1;
    }
    let (lo, hi) = (
        per_node.values().min().copied().unwrap_or(0),
        per_node.values().max().copied().unwrap_or(0),
    );
    assert!(
        per_node.len() == 3 && hi - lo <= 1,
        "10 pods of one set are not spread over the 3 nodes: {per_node:?}"
    );

    // Every claim is bound to its pod's node and has its directory there.
    let cl = claims(&c, "data-drop-").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cl.len(), 10, "claims: {cl:?}");
    let mut dirs = Vec::new();
    for p in &pods {
        let claim = format!("data-{}", p.name);
        let obj = cl
            .iter()
            .find(|o| str_at(o, "/metadata/name") == claim)
            .unwrap_or_else(|| panic!("no claim {claim}"));
        assert_eq!(
            str_at(obj, "/status/phase"),
            "Bound",
            "claim {claim}: {obj}"
        );
        assert_eq!(
            str_at(
                obj,
                "/metadata/annotations/volume.kubernetes.io~1selected-node"
            ),
            p.node,
            "claim {claim} is not bound to {}'s node",
            p.name
        );
        let dir = c.volume_dir(&p.node, NS, &claim);
        assert!(dir.is_dir(), "no volume directory {}", dir.display());
        dirs.push(dir);
    }

    c.run_ok(&["delete", "sts", "drop", "-n", NS]);
    wait_for("the pods, claims and directories to go", timeout(), || {
        let pods = c.pods_named(NS, "drop-")?;
        let cl = claims(&c, "data-drop-")?;
        let left: Vec<String> = dirs
            .iter()
            .filter(|d| d.exists())
            .map(|d| d.display().to_string())
            .collect();
        if pods.is_empty() && cl.is_empty() && left.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "pods: {}; claims: {}; directories: {left:?}",
                json::summary(&pods),
                cl.len()
            ))
        }
    });
    w.assert_identities_unique();
}

#[test]
fn deleting_a_set_with_the_default_retain_keeps_claims_and_directories() {
    let c = Cluster::start(2);
    let w = c.watch_pods();
    c.apply(&sleep_set(
        "keep",
        3,
        "  podManagementPolicy: Parallel\n",
        "",
    ))
    .ok();
    let pods = c.wait_sts_ready(NS, "keep", 3);
    let mut dirs = Vec::new();
    for p in &pods {
        let claim = format!("data-{}", p.name);
        let dir = c.volume_dir(&p.node, NS, &claim);
        assert!(dir.is_dir(), "no volume directory {}", dir.display());
        std::fs::write(dir.join("marker"), &p.name).expect("write a file into the volume");
        dirs.push(dir);
    }
    let uids: Vec<String> = claims(&c, "data-keep-")
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|o| str_at(o, "/metadata/uid").to_string())
        .collect();
    assert_eq!(uids.len(), 3);

    c.run_ok(&["delete", "sts", "keep", "-n", NS]);
    wait_for("the pods to go", timeout(), || {
        let pods = c.pods_named(NS, "keep-")?;
        if pods.is_empty() {
            Ok(())
        } else {
            Err(json::summary(&pods))
        }
    });
    holds_for(
        "the claims and their directories stay",
        Duration::from_secs(2),
        || {
            let now: Vec<String> = claims(&c, "data-keep-")?
                .iter()
                .map(|o| str_at(o, "/metadata/uid").to_string())
                .collect();
            if now != uids {
                return Err(format!("claim uids {now:?}, were {uids:?}"));
            }
            for d in &dirs {
                if !d.join("marker").is_file() {
                    return Err(format!("{} lost its data", d.display()));
                }
            }
            Ok(())
        },
    );
    // `get pvc` lists them, as kubectl does.
    let t = c.table(&["get", "pvc", "-n", NS]);
    assert_eq!(
        t.header,
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS MODES",
            "STORAGECLASS",
            "AGE"
        ],
        "get pvc header"
    );
    for p in &pods {
        let row = t
            .row(&format!("data-{}", p.name))
            .unwrap_or_else(|| panic!("no row for data-{} in {t:?}", p.name));
        assert_eq!(t.cell(row, "STATUS"), "Bound");
        assert_eq!(t.cell(row, "CAPACITY"), "10Mi");
        assert_eq!(t.cell(row, "ACCESS MODES"), "RWO");
    }
    w.assert_identities_unique();
}
