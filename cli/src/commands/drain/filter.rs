//! What `drain` does with each pod of the node (pure): kubectl's filters in kubectl's
//! order and words (skip long-deleted pods, DaemonSet pods, mirror pods, pods with
//! emptyDir data, pods without a controller), the warnings and errors they add up to,
//! the order of evictions (a StatefulSet's pods one at a time, highest ordinal first),
//! and the Go formats kubectl prints (durations, aggregated errors).

use std::time::{Duration, SystemTime};
use twinset_proto::v1::Pod;

const DAEMONSET_FATAL: &str = "DaemonSet-managed Pods (use --ignore-daemonsets to ignore)";
const DAEMONSET_WARNING: &str = "ignoring DaemonSet-managed Pods";
const LOCAL_STORAGE_FATAL: &str =
    "Pods with local storage (use --delete-emptydir-data to override)";
const LOCAL_STORAGE_WARNING: &str = "deleting Pods with local storage";
const UNMANAGED_FATAL: &str = "Pods that declare no controller (use --force to override)";
const UNMANAGED_WARNING: &str = "deleting Pods that declare no controller";
/// The annotation of a static pod's mirror (which the API cannot delete).
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The flags the filters read.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// `--force`: pods without a controller (and of a DaemonSet that is gone) go too.
    pub force: bool,
    /// `--ignore-daemonsets`.
    pub ignore_daemonsets: bool,
    /// `--delete-emptydir-data`.
    pub delete_emptydir_data: bool,
    /// `--skip-wait-for-delete-timeout` (0: never skip).
    pub skip_wait_for_delete_timeout: i64,
}

/// The decision about one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Evict it.
    Okay,
    /// Leave it, silently.
    Skip,
    /// Evict it (`delete`) or leave it, with a warning.
    Warning {
        /// Whether it is evicted.
        delete: bool,
        /// kubectl's warning.
        message: String,
    },
    /// The drain cannot go on because of it.
    Error(String),
}

impl Verdict {
    /// Whether the pod is evicted.
    pub fn deletes(&self) -> bool {
        matches!(self, Verdict::Okay | Verdict::Warning { delete: true, .. })
    }
}

fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().map(|s| s.phase.as_str()),
        Some("Succeeded" | "Failed")
    )
}

/// kubectl's `shouldSkipPod`: deleted more than `timeout` seconds ago (when `timeout` > 0).
pub fn deleted_long_ago(pod: &Pod, timeout: i64, now: SystemTime) -> bool {
    let Some(since) = pod
        .metadata
        .as_ref()
        .and_then(|m| twinset_proto::time::parse(&m.deletion_timestamp))
    else {
        return false;
    };
    let elapsed = now.duration_since(since).unwrap_or_default().as_secs();
    timeout > 0 && elapsed > timeout.unsigned_abs()
}

/// The verdict on `pod`: the filters in kubectl's order, stopping at the first that keeps
/// the pod. `daemonset_exists(namespace, name)` says whether a DaemonSet is still there.
pub fn verdict(
    pod: &Pod,
    opts: &Options,
    daemonset_exists: &dyn Fn(&str, &str) -> bool,
    now: SystemTime,
) -> Verdict {
    let filters: [&dyn Fn() -> Verdict; 5] = [
        &|| {
            if deleted_long_ago(pod, opts.skip_wait_for_delete_timeout, now) {
                Verdict::Skip
            } else {
                Verdict::Okay
            }
        },
        &|| daemonset_filter(pod, opts, daemonset_exists),
        &|| {
            let mirror = pod
                .metadata
                .as_ref()
                .is_some_and(|m| m.annotations.contains_key(MIRROR_ANNOTATION));
            if mirror {
                Verdict::Skip
            } else {
                Verdict::Okay
            }
        },
        &|| local_storage_filter(pod, opts),
        &|| unreplicated_filter(pod, opts),
    ];
    let mut last = Verdict::Okay;
    for filter in filters {
        last = filter();
        if !last.deletes() {
            break;
        }
    }
    last
}

fn daemonset_filter(
    pod: &Pod,
    opts: &Options,
    daemonset_exists: &dyn Fn(&str, &str) -> bool,
) -> Verdict {
    let meta = pod.metadata.clone().unwrap_or_default();
    let Some(owner) = meta.controller() else {
        return Verdict::Okay;
    };
    if owner.kind != "DaemonSet" || owner.api_version != "apps/v1" || finished(pod) {
        return Verdict::Okay;
    }
    if !daemonset_exists(&meta.namespace, &owner.name) {
        let missing = format!("daemonsets.apps \"{}\" not found", owner.name);
        return if opts.force {
            Verdict::Warning {
                delete: true,
                message: missing,
            }
        } else {
            Verdict::Error(missing)
        };
    }
    if !opts.ignore_daemonsets {
        return Verdict::Error(DAEMONSET_FATAL.into());
    }
    Verdict::Warning {
        delete: false,
        message: DAEMONSET_WARNING.into(),
    }
}

fn local_storage_filter(pod: &Pod, opts: &Options) -> Verdict {
    let empty_dir = pod
        .spec
        .as_ref()
        .is_some_and(|s| s.volumes.iter().any(|v| v.empty_dir.is_some()));
    if !empty_dir || finished(pod) {
        return Verdict::Okay;
    }
    if !opts.delete_emptydir_data {
        return Verdict::Error(LOCAL_STORAGE_FATAL.into());
    }
    Verdict::Warning {
        delete: true,
        message: LOCAL_STORAGE_WARNING.into(),
    }
}

fn unreplicated_filter(pod: &Pod, opts: &Options) -> Verdict {
    if finished(pod) {
        return Verdict::Okay;
    }
    if pod.metadata.as_ref().and_then(|m| m.controller()).is_some() {
        return Verdict::Okay;
    }
    if opts.force {
        return Verdict::Warning {
            delete: true,
            message: UNMANAGED_WARNING.into(),
        };
    }
    Verdict::Error(UNMANAGED_FATAL.into())
}

/// The node's pods with their verdicts, in list order.
#[derive(Clone, Debug, Default)]
pub struct PodDeleteList(pub Vec<(Pod, Verdict)>);

fn ns_name(pod: &Pod) -> String {
    let m = pod.metadata.clone().unwrap_or_default();
    format!("{}/{}", m.namespace, m.name)
}

/// Groups `ns/name` of the pods by message, in the order messages first appear.
fn grouped<'a>(items: impl Iterator<Item = (&'a Pod, &'a str)>) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for (pod, message) in items {
        match groups.iter_mut().find(|(m, _)| m == message) {
            Some((_, pods)) => pods.push(ns_name(pod)),
            None => groups.push((message.to_string(), vec![ns_name(pod)])),
        }
    }
    groups
}

impl PodDeleteList {
    /// The pods to evict.
    pub fn pods(&self) -> Vec<Pod> {
        self.0
            .iter()
            .filter(|(_, v)| v.deletes())
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// kubectl's warning text (`ignoring DaemonSet-managed Pods: ns/a, ns/b; …`), or "".
    pub fn warnings(&self) -> String {
        let items = self.0.iter().filter_map(|(p, v)| match v {
            Verdict::Warning { message, .. } => Some((p, message.as_str())),
            _ => None,
        });
        grouped(items)
            .into_iter()
            .map(|(m, pods)| format!("{m}: {}", pods.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// One error per message (`cannot delete Pods with local storage (…): ns/a`).
    pub fn errors(&self) -> Vec<String> {
        let items = self.0.iter().filter_map(|(p, v)| match v {
            Verdict::Error(message) => Some((p, message.as_str())),
            _ => None,
        });
        grouped(items)
            .into_iter()
            .map(|(m, pods)| format!("cannot delete {m}: {}", pods.join(", ")))
            .collect()
    }
}

/// A StatefulSet by namespace and name.
type SetKey = (String, String);

/// The StatefulSet that controls `pod`.
fn set_of(pod: &Pod) -> Option<SetKey> {
    let m = pod.metadata.as_ref()?;
    let owner = m.controller()?;
    (owner.kind == "StatefulSet").then(|| (m.namespace.clone(), owner.name.clone()))
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata
        .as_ref()
        .is_some_and(|m| !m.deletion_timestamp.is_empty())
}

/// The ordinal of a StatefulSet pod named `<set>-<ordinal>`.
fn ordinal(pod: &Pod, set: &str) -> Option<u64> {
    let name = pod.metadata.as_ref()?.name.as_str();
    name.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

/// The evictions as sequences that run side by side: each StatefulSet's pods in one
/// sequence, those already terminating first, then highest ordinal first (the
/// scale-down order); every other pod on its own.
pub fn eviction_groups(pods: Vec<Pod>) -> Vec<Vec<Pod>> {
    let mut groups: Vec<(Option<SetKey>, Vec<Pod>)> = Vec::new();
    for pod in pods {
        let set = set_of(&pod);
        match groups.iter_mut().find(|(s, _)| s.is_some() && *s == set) {
            Some((_, members)) => members.push(pod),
            None => groups.push((set, vec![pod])),
        }
    }
    groups
        .into_iter()
        .map(|(set, mut members)| {
            if let Some((_, set)) = set {
                // A pod already terminating first: it needs no budget, and its end
                // frees the budget for the others.
                members.sort_by_key(|p| (!terminating(p), std::cmp::Reverse(ordinal(p, &set))));
            }
            members
        })
        .collect()
}

/// A duration as Go's `time.Duration.String()` prints it (`5s`, `1m30s`, `1h0m0s`,
/// `500ms`, `0s`), as kubectl's messages show it.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (unit, per) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", fraction(nanos, per));
    }
    let secs = d.as_secs();
    let (h, m) = (secs / 3600, secs / 60 % 60);
    let s = fraction(
        u128::from(secs % 60) * 1_000_000_000 + u128::from(d.subsec_nanos()),
        1_000_000_000,
    );
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

/// `n / per` with the fraction's trailing zeros dropped (`1.5`, `2`).
fn fraction(n: u128, per: u128) -> String {
    let (whole, rest) = (n / per, n % per);
    if rest == 0 {
        return whole.to_string();
    }
    let width = per.to_string().len() - 1;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Go's `utilerrors.NewAggregate(errs).Error()`: one message as is, several (duplicates
/// dropped) as `[a, b]`.
pub fn aggregate(messages: &[String]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for m in messages {
        if !seen.contains(&m.as_str()) {
            seen.push(m);
        }
    }
    match seen.as_slice() {
        [one] => one.to_string(),
        many => format!("[{}]", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use twinset_proto::v1::{
        EmptyDirVolumeSource, ObjectMeta, OwnerReference, PodSpec, PodStatus, Volume,
    };

    fn pod(name: &str, owner: Option<(&str, &str)>) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "ns".into(),
                owner_references: owner
                    .map(|(kind, name)| OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: kind.into(),
                        name: name.into(),
                        uid: "u".into(),
                        controller: Some(true),
                        ..Default::default()
                    })
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: "Running".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn with_empty_dir(mut p: Pod) -> Pod {
        p.spec = Some(PodSpec {
            volumes: vec![Volume {
                name: "scratch".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            }],
            ..Default::default()
        });
        p
    }

    fn judge(p: &Pod, opts: Options) -> Verdict {
        verdict(p, &opts, &|_, name| name == "mon", SystemTime::now())
    }

    #[test]
    fn daemonset_pods_are_refused_or_ignored() {
        let ds = pod("mon-x", Some(("DaemonSet", "mon")));
        assert_eq!(
            judge(&ds, Options::default()),
            Verdict::Error(DAEMONSET_FATAL.into())
        );
        let ignore = Options {
            ignore_daemonsets: true,
            ..Default::default()
        };
        assert_eq!(
            judge(&ds, ignore),
            Verdict::Warning {
                delete: false,
                message: "ignoring DaemonSet-managed Pods".into()
            }
        );
        // Its DaemonSet is gone: refused, or evicted with --force.
        let orphan = pod("gone-x", Some(("DaemonSet", "gone")));
        assert_eq!(
            judge(&orphan, ignore),
            Verdict::Error("daemonsets.apps \"gone\" not found".into())
        );
        let force = Options {
            force: true,
            ..ignore
        };
        assert!(judge(&orphan, force).deletes());
        // A finished DaemonSet pod goes.
        let mut done = ds.clone();
        done.status.as_mut().unwrap().phase = "Succeeded".into();
        assert_eq!(judge(&done, Options::default()), Verdict::Okay);
    }

    #[test]
    fn empty_dir_unmanaged_mirror_and_finished_pods() {
        let local = with_empty_dir(pod("web-0", Some(("StatefulSet", "web"))));
        assert_eq!(
            judge(&local, Options::default()),
            Verdict::Error(LOCAL_STORAGE_FATAL.into())
        );
        let opts = Options {
            delete_emptydir_data: true,
            ..Default::default()
        };
        assert!(judge(&local, opts).deletes());
        let bare = pod("bare", None);
        assert_eq!(
            judge(&bare, Options::default()),
            Verdict::Error(UNMANAGED_FATAL.into())
        );
        let forced = judge(
            &bare,
            Options {
                force: true,
                ..Default::default()
            },
        );
        assert_eq!(
            forced,
            Verdict::Warning {
                delete: true,
                message: UNMANAGED_WARNING.into()
            }
        );
        let mut finished = bare.clone();
        finished.status.as_mut().unwrap().phase = "Failed".into();
        assert_eq!(judge(&finished, Options::default()), Verdict::Okay);
        let mut mirror = bare.clone();
        mirror.metadata.as_mut().unwrap().annotations =
            BTreeMap::from([(MIRROR_ANNOTATION.to_string(), "x".to_string())]);
        assert_eq!(judge(&mirror, Options::default()), Verdict::Skip);
        // Deleted long ago, with --skip-wait-for-delete-timeout: skipped.
        let mut old = bare.clone();
        old.metadata.as_mut().unwrap().deletion_timestamp = "2020-01-01T00:00:00Z".into();
        let skip = Options {
            skip_wait_for_delete_timeout: 10,
            ..Default::default()
        };
        assert_eq!(judge(&old, skip), Verdict::Skip);
        assert!(matches!(judge(&old, Options::default()), Verdict::Error(_)));
    }

    #[test]
    fn warnings_and_errors_read_as_kubectls() {
        let list = PodDeleteList(vec![
            (pod("a", None), Verdict::Error(UNMANAGED_FATAL.into())),
            (
                pod("m1", None),
                Verdict::Warning {
                    delete: false,
                    message: DAEMONSET_WARNING.into(),
                },
            ),
            (pod("b", None), Verdict::Error(LOCAL_STORAGE_FATAL.into())),
            (pod("c", None), Verdict::Error(UNMANAGED_FATAL.into())),
            (
                pod("m2", None),
                Verdict::Warning {
                    delete: false,
                    message: DAEMONSET_WARNING.into(),
                },
            ),
            (pod("web-0", None), Verdict::Okay),
        ]);
        assert_eq!(
            list.warnings(),
            "ignoring DaemonSet-managed Pods: ns/m1, ns/m2"
        );
        assert_eq!(
            list.errors(),
            [
                "cannot delete Pods that declare no controller (use --force to override): ns/a, ns/c",
                "cannot delete Pods with local storage (use --delete-emptydir-data to override): ns/b",
            ]
        );
        let names: Vec<String> = list.pods().iter().map(ns_name).collect();
        assert_eq!(names, ["ns/web-0"]);
    }

    #[test]
    fn a_sets_pods_go_one_at_a_time_highest_ordinal_first() {
        let mut leaving = pod("db-1", Some(("StatefulSet", "db")));
        leaving.metadata.as_mut().unwrap().deletion_timestamp = "2026-01-01T00:00:00Z".into();
        let pods = vec![
            pod("db-0", Some(("StatefulSet", "db"))),
            leaving,
            pod("loner", Some(("ReplicaSet", "rs"))),
            pod("web-10", Some(("StatefulSet", "web"))),
            pod("db-2", Some(("StatefulSet", "db"))),
            pod("web-9", Some(("StatefulSet", "web"))),
        ];
        let groups: Vec<Vec<String>> = eviction_groups(pods)
            .iter()
            .map(|g| g.iter().map(ns_name).collect())
            .collect();
        assert_eq!(
            groups,
            [
                vec!["ns/db-1", "ns/db-2", "ns/db-0"],
                vec!["ns/loner"],
                vec!["ns/web-10", "ns/web-9"],
            ]
        );
    }

    #[test]
    fn go_formats() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(5), "5s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_millis(250), "250ms"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want);
        }
        let one = vec!["a".to_string()];
        assert_eq!(aggregate(&one), "a");
        let two = vec!["a".to_string(), "b".to_string(), "a".to_string()];
        assert_eq!(aggregate(&two), "[a, b]");
    }
}
