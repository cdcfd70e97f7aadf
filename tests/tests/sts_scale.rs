//! OrderedReady with cheap pods (`twinset/sleep:latest`): ordinals from
//! `spec.ordinals.start`, one-at-a-time creation and scale-down (asserted from the
//! watch stream's revisions), whenScaled: Delete, stable identity labels, and an
//! unschedulable replica that stays Pending with a FailedScheduling event while the
//! higher ordinals wait.

use std::time::Duration;

use twinset_e2e::json::{self, str_at};
use twinset_e2e::{holds_for, timeout, wait_for, Cluster, DATA_CLAIM_TAIL};

const NS: &str = "scaling";

fn claim_uid(c: &Cluster, name: &str) -> Result<Option<String>, String> {
    let v = c.get_json(&["pvc", "-n", NS])?;
    Ok(json::items(&v)
        .iter()
        .find(|o| str_at(o, "/metadata/name") == name)
        .map(|o| str_at(o, "/metadata/uid").to_string()))
}

#[test]
fn ordered_ready_scales_one_ordinal_at_a_time_from_ordinals_start() {
    let c = Cluster::start(3);
    let w = c.watch_pods();
    let set = "counter";
    let manifest = format!(
        "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {set}
  namespace: {NS}
spec:
  serviceName: {set}
  replicas: 3
  ordinals:
    start: 5
  persistentVolumeClaimRetentionPolicy:
    whenScaled: Delete
  selector:
    matchLabels:
      app: {set}
  template:
    metadata:
      labels:
        app: {set}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: sleep
        image: twinset/sleep:latest
{DATA_CLAIM_TAIL}"
    );
    let out = c.apply(&manifest);
    assert!(
        out.ok()
            .contains(&format!("statefulset.apps/{set} created")),
        "{out}"
    );
    let pods = c.wait_sts_ready(NS, set, 3);
    let got: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(got, ["counter-5", "counter-6", "counter-7"]);
    w.assert_ordered_creation(NS, set, 5, 0, &[5, 6, 7]);

    // Identity: labels, hostname, the claim named after template, set and ordinal.
    for p in &pods {
        let ord = p.name.rsplit('-').next().unwrap_or("");
        let label = |k: &str| p.labels.get(k).and_then(|v| v.as_str()).unwrap_or("");
        assert_eq!(label("statefulset.kubernetes.io/pod-name"), p.name);
        assert_eq!(label("apps.kubernetes.io/pod-index"), ord);
        assert!(
            label("controller-revision-hash").starts_with("counter-"),
            "labels of {}: {:?}",
            p.name,
            p.labels
        );
        assert_eq!(p.owners, ["StatefulSet/counter"], "owners of {}", p.name);
        assert_eq!(str_at(&p.raw, "/spec/hostname"), p.name);
        assert_eq!(str_at(&p.raw, "/spec/subdomain"), set);
        let env = c.environ(c.wait_pod_process(NS, &p.name));
        assert_eq!(env.get("HOSTNAME"), Some(&p.name), "HOSTNAME of {}", p.name);
        let claim = format!("data-{}", p.name);
        let vols = p
            .raw
            .pointer("/spec/volumes")
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default();
        assert!(
            vols.iter().any(|v| str_at(v, "/name") == "data"
                && str_at(v, "/persistentVolumeClaim/claimName") == claim),
            "{} has no volume data -> {claim}: {vols:?}",
            p.name
        );
        assert!(
            c.volume_dir(&p.node, NS, &claim).is_dir(),
            "no directory for {claim}"
        );
    }
    // A file in counter-6's volume, to see it go with its claim on scale-down.
    let six = &pods[1];
    let six_dir = c.volume_dir(&six.node, NS, "data-counter-6");
    std::fs::write(six_dir.join("marker"), "six").expect("write into the volume");
    let six_claim = claim_uid(&c, "data-counter-6")
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("claim data-counter-6");

    // Up to 5: counter-8 then counter-9, each after the ones below are Ready.
    let since = c.store_revision();
    assert_eq!(
        c.run_ok(&["scale", "sts", set, "-n", NS, "--replicas=5"])
            .trim(),
        "statefulset.apps/counter scaled"
    );
    c.wait_sts_ready(NS, set, 5);
    w.assert_ordered_creation(NS, set, 5, since, &[8, 9]);

    // Down to 1: 9, 8, 7, 6 go, each only after the one above is gone.
    let since = c.store_revision();
    c.run_ok(&["scale", "sts", set, "-n", NS, "--replicas=1"]);
    let left = c.wait_sts_ready(NS, set, 1);
    assert_eq!(left[0].name, "counter-5");
    w.assert_ordered_removal(NS, set, &[9, 8, 7, 6], since);
    // whenScaled: Delete: the removed ordinals' claims go, with their directories.
    wait_for(
        "the claims of ordinals 6..9 to be deleted",
        timeout(),
        || {
            let mut present = Vec::new();
            for i in 6..=9 {
                let n = format!("data-counter-{i}");
                if claim_uid(&c, &n)?.is_some() {
                    present.push(n);
                }
            }
            if claim_uid(&c, "data-counter-5")?.is_none() {
                return Err("data-counter-5 was deleted too".into());
            }
            if six_dir.exists() {
                present.push(six_dir.display().to_string());
            }
            if present.is_empty() {
                Ok(())
            } else {
                Err(format!("still there: {present:?}"))
            }
        },
    );

    // Back to 2: counter-6 returns with a new, empty claim.
    c.run_ok(&["scale", "sts", set, "-n", NS, "--replicas=2"]);
    let pods = c.wait_sts_ready(NS, set, 2);
    let six = &pods[1];
    assert_eq!(six.name, "counter-6");
    let uid = claim_uid(&c, "data-counter-6")
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("claim data-counter-6");
    assert_ne!(uid, six_claim, "data-counter-6 was not recreated");
    let dir = c.volume_dir(&six.node, NS, "data-counter-6");
    assert!(dir.is_dir(), "no directory {}", dir.display());
    assert!(
        !dir.join("marker").exists(),
        "the new claim's directory holds the old claim's data"
    );
    w.assert_identities_unique();
}

#[test]
fn an_unschedulable_replica_stays_pending_and_holds_back_the_next() {
    let c = Cluster::start(3);
    let w = c.watch_pods();
    let manifest = format!(
        "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: huge
  namespace: {NS}
spec:
  serviceName: huge
  replicas: 3
  selector:
    matchLabels:
      app: huge
  template:
    metadata:
      labels:
        app: huge
    spec:
      containers:
      - name: sleep
        image: twinset/sleep:latest
        resources:
          requests:
            memory: 100Ti
"
    );
    c.apply(&manifest).ok();
    let want = "0/3 nodes are available: 3 Insufficient memory.";
    let ev = wait_for("a FailedScheduling event for huge-0", timeout(), || {
        let evs = c.events(NS)?;
        evs.into_iter()
            .find(|e| {
                str_at(e, "/involvedObject/name") == "huge-0"
                    && str_at(e, "/reason") == "FailedScheduling"
            })
            .ok_or_else(|| "no FailedScheduling event yet".to_string())
    });
    assert_eq!(str_at(&ev, "/message"), want, "{ev}");
    assert_eq!(str_at(&ev, "/type"), "Warning", "{ev}");
    assert_eq!(str_at(&ev, "/involvedObject/kind"), "Pod", "{ev}");

    // `describe pod` shows it under Events, as kubectl does.
    let text = c.run_ok(&["describe", "pod", "huge-0", "-n", NS]);
    let line = text
        .lines()
        .find(|l| l.contains("FailedScheduling"))
        .unwrap_or_else(|| panic!("describe pod huge-0 shows no FailedScheduling event:\n{text}"));
    assert!(line.contains("Warning"), "{line}");
    assert!(line.contains(want), "{line}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("Status:") && l.contains("Pending")),
        "describe pod huge-0 does not say Pending:\n{text}"
    );

    holds_for(
        "huge-0 stays Pending and huge-1 is never created",
        Duration::from_secs(2),
        || {
            let pods = c.pods_named(NS, "huge-")?;
            match pods.as_slice() {
                [p] if p.name == "huge-0" && p.phase == "Pending" && p.node.is_empty() => Ok(()),
                _ => Err(json::summary(&pods)),
            }
        },
    );
    let sts = c
        .get_json(&["sts", "huge", "-n", NS])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json::int_at(&sts, "/status/readyReplicas").unwrap_or(0), 0);
    let t = c.table(&["get", "sts", "-n", NS]);
    let row = t
        .row("huge")
        .unwrap_or_else(|| panic!("no huge row: {t:?}"));
    assert_eq!(t.cell(row, "READY"), "0/3");
    w.assert_identities_unique();
}
