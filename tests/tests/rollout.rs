//! `rollout history|undo|restart` (issue 12) on a 3-node cluster with cheap pods, through
//! `twinset` and through the real kubectl: both revisions are listed, `--revision 1`
//! shows the first template, undo brings it back (a StatefulSet from the highest ordinal
//! down), and restart replaces every pod exactly once with the template otherwise
//! unchanged. Pod histories come from the gRPC watch, so "once" covers every revision
//! of the store.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use twinset_e2e::json::{self, str_at};
use twinset_e2e::kubectl::kubectl_as;
use twinset_e2e::{timeout, wait_for, Cluster, Output, PodView, PodWatch};

const NS: &str = "default";
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// A DaemonSet or a StatefulSet of three `twinset/sleep` pods whose env says `VERSION`.
#[derive(Clone, Copy)]
struct Set {
    /// `ds` or `sts`.
    word: &'static str,
    name: &'static str,
}

const STS: Set = Set {
    word: "sts",
    name: "db",
};
const DS: Set = Set {
    word: "ds",
    name: "web",
};

impl Set {
    fn target(self) -> String {
        format!("{}/{}", self.word, self.name)
    }

    fn qualified(self) -> String {
        let kind = match self.word {
            "sts" => "statefulset",
            _ => "daemonset",
        };
        format!("{kind}.apps/{}", self.name)
    }

    fn is_sts(self) -> bool {
        self.word == "sts"
    }

    fn manifest(self, version: &str) -> String {
        let (kind, extra) = if self.is_sts() {
            (
                "StatefulSet",
                format!("  serviceName: {}\n  replicas: 3\n", self.name),
            )
        } else {
            ("DaemonSet", String::new())
        };
        format!(
            "apiVersion: apps/v1
kind: {kind}
metadata:
  name: {name}
  namespace: {NS}
  annotations:
    kubernetes.io/change-cause: apply VERSION={version}
spec:
{extra}  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: twinset/sleep:latest
        env:
        - name: VERSION
          value: \"{version}\"
",
            name = self.name
        )
    }

    /// Waits until the rollout is done (`rollout status --watch=false`, once per try)
    /// with three Running and Ready pods whose env says `version`; returns them by name.
    fn wait_version(self, c: &Cluster, version: &str) -> Vec<PodView> {
        wait_for(
            &format!("{} rolled out at VERSION={version}", self.target()),
            timeout(),
            || {
                let status = c.run(&["rollout", "status", &self.target(), "--watch=false"]);
                let line = status.result()?.trim().to_string();
                let done = line.ends_with("successfully rolled out")
                    || line.starts_with("partitioned roll out complete")
                    || line.starts_with("statefulset rolling update complete");
                let mut pods = c.pods_named(NS, &format!("{}-", self.name))?;
                pods.sort_by(|a, b| a.name.cmp(&b.name));
                let hashes: BTreeSet<&str> = pods
                    .iter()
                    .map(|p| label(p, "controller-revision-hash"))
                    .collect();
                if done
                    && pods.len() == 3
                    && hashes.len() == 1
                    && pods
                        .iter()
                        .all(|p| p.is_running_ready() && env(p, "VERSION") == version)
                {
                    Ok(pods)
                } else {
                    Err(format!("{line}; {}", json::summary(&pods)))
                }
            },
        )
    }
}

fn label<'a>(p: &'a PodView, key: &str) -> &'a str {
    p.labels.get(key).and_then(Value::as_str).unwrap_or("")
}

fn env(p: &PodView, name: &str) -> String {
    p.raw
        .pointer("/spec/containers/0/env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|e| str_at(e, "/name") == name)
        .map(|e| str_at(e, "/value").to_string())
        .unwrap_or_default()
}

fn uids(pods: &[PodView]) -> BTreeSet<String> {
    pods.iter().map(|p| p.uid.clone()).collect()
}

/// The set's revisions as `twinset get controllerrevisions` sees them: number → name.
fn revisions(c: &Cluster, set: Set) -> BTreeMap<i64, String> {
    let v = c
        .get_json(&["controllerrevisions", "-n", NS])
        .unwrap_or_else(|e| panic!("{e}"));
    json::items(&v)
        .iter()
        .filter(|r| str_at(r, "/metadata/name").starts_with(&format!("{}-", set.name)))
        .map(|r| {
            (
                json::int_at(r, "/revision").unwrap_or(0),
                str_at(r, "/metadata/name").to_string(),
            )
        })
        .collect()
}

/// Asserts that between store revision `since` and now every pod of `old` was deleted
/// exactly once and exactly the pods of `new` were created, none of them deleted: each
/// old pod replaced once, nothing else churned. For a StatefulSet, also that ordinals
/// were replaced from the highest down.
fn assert_replaced_once(w: &PodWatch, set: Set, old: &[PodView], new: &[PodView], since: u64) {
    let old_names: Vec<String> = old.iter().map(|p| p.name.clone()).collect();
    let new_names: Vec<String> = new.iter().map(|p| p.name.clone()).collect();
    w.wait_seen(NS, set.name, "DELETED", &old_names, since);
    let events = w.wait_seen(NS, set.name, "ADDED", &new_names, since);
    let prefix = format!("{}-", set.name);
    let events: Vec<_> = events
        .iter()
        .filter(|e| e.rev > since && e.pod.namespace == NS && e.pod.name.starts_with(&prefix))
        .collect();
    let history = || {
        events
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let added: BTreeSet<String> = events
        .iter()
        .filter(|e| e.kind == "ADDED")
        .map(|e| e.pod.uid.clone())
        .collect();
    assert_eq!(added, uids(new), "pods created:\n{}", history());
    assert!(uids(old).is_disjoint(&uids(new)), "a pod was kept");
    for p in old {
        let deleted = events
            .iter()
            .filter(|e| e.kind == "DELETED" && e.pod.uid == p.uid)
            .count();
        assert_eq!(
            deleted,
            1,
            "{} deleted {deleted} times:\n{}",
            p.name,
            history()
        );
    }
    assert!(
        !events
            .iter()
            .any(|e| e.kind == "DELETED" && added.contains(&e.pod.uid)),
        "a new pod was deleted again:\n{}",
        history()
    );
    if set.is_sts() {
        w.assert_ordered_removal(NS, set.name, &[2, 1, 0], since);
    }
}

/// Applies v1 then v2 and waits for each to roll out; returns the v2 pods.
fn two_revisions(c: &Cluster, set: Set) -> Vec<PodView> {
    for (v, outcome) in [("1", "created"), ("2", "configured")] {
        let out = c.apply(&set.manifest(v));
        // (A StatefulSet's first apply also reports its headless Service.)
        let want = format!("{} {outcome}", set.qualified());
        assert!(out.ok().lines().any(|l| l == want), "{out}");
        set.wait_version(c, v);
    }
    let pods = set.wait_version(c, "2");
    assert_eq!(
        revisions(c, set).keys().copied().collect::<Vec<_>>(),
        [1, 2]
    );
    pods
}

/// history, undo, restart and their refusals through `twinset`.
fn through_twinset(c: &Cluster, w: &PodWatch, set: Set) {
    let v2 = two_revisions(c, set);
    let q = set.qualified();
    let target = set.target();
    assert_eq!(
        c.run_ok(&["rollout", "history", &target]),
        format!("{q} \nREVISION  CHANGE-CAUSE\n1         apply VERSION=1\n2         apply VERSION=2\n\n")
    );
    let first = c.run_ok(&["rollout", "history", &target, "--revision", "1"]);
    assert!(
        first.starts_with(&format!(
            "{q} with revision #1\nPod Template:\n  Labels:\tapp={}\n",
            set.name
        )),
        "{first}"
    );
    assert!(
        first.contains("    Image:\ttwinset/sleep:latest\n"),
        "{first}"
    );
    assert!(first.contains("      VERSION:\t1\n"), "{first}");
    let out = c.run(&["rollout", "history", &target, "--revision", "3"]);
    assert_eq!(
        out.failed().trim(),
        "error: unable to find the specified revision"
    );

    // A client dry run prints the template and changes nothing.
    let dry = c.run_ok(&["rollout", "undo", &target, "--dry-run=client"]);
    assert!(
        dry.starts_with(&format!("{q} will roll back to Pod Template:\n"))
            && dry.contains("      VERSION:\t1\n")
            && dry.ends_with(" (dry run)\n"),
        "{dry}"
    );
    let out = c.run(&["rollout", "undo", &target, "--dry-run=server"]);
    assert!(
        out.failed().contains("--dry-run=server is not supported"),
        "{out}"
    );

    // Undo: back to v1's template, a new revision number for it.
    let since = c.store_revision();
    assert_eq!(
        c.run_ok(&["rollout", "undo", &target]).trim(),
        format!("{q} rolled back")
    );
    let v1 = set.wait_version(c, "1");
    assert_replaced_once(w, set, &v2, &v1, since);
    let revs = revisions(c, set);
    assert_eq!(revs.keys().copied().collect::<Vec<_>>(), [2, 3], "{revs:?}");
    // A StatefulSet's pods carry the revision's name, a DaemonSet's its hash.
    assert!(
        revs[&3].ends_with(label(&v1[0], "controller-revision-hash")),
        "{revs:?} {:?}",
        v1[0].labels
    );
    assert_eq!(
        c.run_ok(&["rollout", "undo", &target, "--to-revision", "3"])
            .trim(),
        format!("{q} skipped rollback (current template already matches revision 3)")
    );
    let out = c.run(&["rollout", "undo", &target, "--to-revision", "1"]);
    assert_eq!(
        out.failed().trim(),
        "error: unable to find specified revision 1 in history"
    );

    // Restart: every pod once, the template otherwise the same.
    let since = c.store_revision();
    assert_eq!(
        c.run_ok(&["rollout", "restart", &target]).trim(),
        format!("{q} restarted")
    );
    let restarted = set.wait_version(c, "1");
    assert_replaced_once(w, set, &v1, &restarted, since);
    for p in &restarted {
        assert!(
            !str_at(
                &p.raw,
                &format!("/metadata/annotations/{}", RESTARTED_AT.replace('/', "~1"))
            )
            .is_empty(),
            "{} has no {RESTARTED_AT}: {}",
            p.name,
            p.raw
        );
        assert_eq!(
            str_at(&p.raw, "/spec/containers/0/image"),
            "twinset/sleep:latest"
        );
        assert_eq!(env(p, "VERSION"), "1");
    }
    assert_eq!(
        revisions(c, set).keys().copied().collect::<Vec<_>>(),
        [2, 3, 4]
    );

    // Pausing is for Deployments only.
    let out = c.run(&["rollout", "pause", &target]);
    let resource = if set.is_sts() {
        "statefulsets"
    } else {
        "daemonsets"
    };
    assert_eq!(
        out.failed().trim(),
        format!(
            "error: {resource}.apps \"{}\" pausing is not supported",
            set.name
        )
    );
}

fn kubectl(c: &Cluster, args: &[&str]) -> Output {
    kubectl_as(c, None, args)
}

/// kubectl's own history (the same text as twinset's), undo and restart.
fn through_kubectl(c: &Cluster, w: &PodWatch, set: Set) {
    let v2 = two_revisions(c, set);
    let q = set.qualified();
    let target = set.target();
    for args in [vec![], vec!["--revision", "1"], vec!["--revision", "2"]] {
        let mut full = vec!["rollout", "history", target.as_str()];
        full.extend(&args);
        let theirs = kubectl(c, &full);
        assert_eq!(theirs.ok(), c.run_ok(&full), "{full:?}");
    }
    let since = c.store_revision();
    assert_eq!(
        kubectl(c, &["rollout", "undo", &target]).ok().trim(),
        format!("{q} rolled back")
    );
    let v1 = set.wait_version(c, "1");
    assert_replaced_once(w, set, &v2, &v1, since);
    let since = c.store_revision();
    assert_eq!(
        kubectl(c, &["rollout", "restart", &target]).ok().trim(),
        format!("{q} restarted")
    );
    let restarted = set.wait_version(c, "1");
    assert_replaced_once(w, set, &v1, &restarted, since);
    // The revisions keep the set's change cause of their making: undo renumbers
    // revision 1, restart makes 4 while the set still says VERSION=2, as upstream.
    let history = c.run_ok(&["rollout", "history", &target]);
    assert_eq!(
        history,
        format!("{q} \nREVISION  CHANGE-CAUSE\n2         apply VERSION=2\n3         apply VERSION=1\n4         apply VERSION=2\n\n")
    );
    assert_eq!(kubectl(c, &["rollout", "history", &target]).ok(), history);
    // kubectl refuses to pause a set itself, with the line twinset prints.
    let theirs = kubectl(c, &["rollout", "pause", &target]);
    assert_eq!(
        theirs.failed(),
        c.run(&["rollout", "pause", &target]).failed()
    );
    let out = kubectl(c, &["rollout", "undo", &target, "--to-revision=4"]);
    assert_eq!(
        out.ok().trim(),
        format!("{q} skipped rollback (current template already matches revision 4)")
    );
}

#[test]
fn statefulset_history_undo_and_restart_with_twinset() {
    let c = Cluster::start(3);
    let w = c.watch_pods();
    through_twinset(&c, &w, STS);
    w.assert_identities_unique();
}

#[test]
fn statefulset_history_undo_and_restart_with_kubectl() {
    let c = Cluster::start(3);
    let w = c.watch_pods();
    through_kubectl(&c, &w, STS);
    w.assert_identities_unique();
}

#[test]
fn daemonset_history_undo_and_restart_with_twinset() {
    let c = Cluster::start(3);
    let w = c.watch_pods();
    through_twinset(&c, &w, DS);
}

#[test]
fn daemonset_history_undo_and_restart_with_kubectl() {
    let c = Cluster::start(3);
    let w = c.watch_pods();
    through_kubectl(&c, &w, DS);
}

#[test]
fn rollout_status_times_out_and_checks_once_as_kubectl_does() {
    let c = Cluster::start(1);
    // A StatefulSet whose pod can never be scheduled: its rollout never finishes.
    let stuck = STS.manifest("1").replace(
        "      terminationGracePeriodSeconds: 1\n",
        "      terminationGracePeriodSeconds: 1\n      nodeSelector:\n        nowhere: \"true\"\n",
    );
    c.apply(&stuck).ok();
    for out in [
        c.run(&["rollout", "status", "sts/db", "--timeout=1s"]),
        kubectl(&c, &["rollout", "status", "sts/db", "--timeout=1s"]),
    ] {
        assert_eq!(
            out.failed().trim(),
            "error: timed out waiting for the condition",
            "{out}"
        );
    }
    wait_for(
        "rollout status --watch=false to say once what it waits for",
        timeout(),
        || {
            let out = c.run(&["rollout", "status", "sts/db", "--watch=false"]);
            match out.result()?.trim() {
                "Waiting for 3 pods to be ready..." => Ok(()),
                other => Err(other.to_string()),
            }
        },
    );
    let out = c.run(&["rollout", "undo", "sts/db"]);
    assert_eq!(
        out.failed().trim(),
        "error: no last revision to roll back to"
    );
    let out = c.run(&["rollout", "history", "pod/db-0"]);
    assert_eq!(
        out.failed().trim(),
        "error: no history viewer has been implemented for \"Pod\""
    );
}
