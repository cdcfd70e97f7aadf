//! Whether a pod template fits a node: nodeSelector, required node affinity and
//! taints against tolerations, as the Kubernetes scheduler and DaemonSet controller
//! judge them. Pure functions, shared by every controller that places pods.

use std::collections::BTreeMap;
use twinset_proto::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint, Toleration,
};

/// Taint keys Kubernetes manages itself.
pub mod taint_keys {
    /// The node's Ready condition is False.
    pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
    /// The node stopped reporting (Ready is Unknown).
    pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
    /// The node is low on disk.
    pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
    /// The node is low on memory.
    pub const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
    /// The node is low on process ids.
    pub const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
    /// The node is cordoned.
    pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
    /// The node's network is not configured.
    pub const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
}

/// Effects as spelled in taints.
pub const NO_SCHEDULE: &str = "NoSchedule";
/// Evicts running pods that do not tolerate the taint.
pub const NO_EXECUTE: &str = "NoExecute";

/// How a pod template relates to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fit {
    /// A new pod may be placed there.
    pub should_run: bool,
    /// A pod already there may stay (true also when only a NoSchedule taint is untolerated).
    pub may_continue: bool,
}

/// Judges `spec` (a pod template's spec, tolerations included) against `node`.
pub fn fit(spec: &PodSpec, node: &Node) -> Fit {
    if !selector_matches(spec, node) {
        return Fit {
            should_run: false,
            may_continue: false,
        };
    }
    let taints = node
        .spec
        .as_ref()
        .map(|s| s.taints.as_slice())
        .unwrap_or_default();
    let mut fit = Fit {
        should_run: true,
        may_continue: true,
    };
    for taint in taints {
        if taint.effect != NO_SCHEDULE && taint.effect != NO_EXECUTE {
            continue;
        }
        if spec.tolerations.iter().any(|t| tolerates(t, taint)) {
            continue;
        }
        fit.should_run = false;
        if taint.effect == NO_EXECUTE {
            fit.may_continue = false;
        }
    }
    fit
}

/// True when the template's nodeSelector and required node affinity both match the node.
pub fn selector_matches(spec: &PodSpec, node: &Node) -> bool {
    let labels = node_labels(node);
    if !spec
        .node_selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        // Terms are ORed; no terms at all matches no node (as Kubernetes).
        Some(sel) => sel
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node)),
        None => true,
    }
}

fn node_labels(node: &Node) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    node.metadata.as_ref().map(|m| &m.labels).unwrap_or(&EMPTY)
}

/// One node selector term: its expressions and fields all hold; an empty term matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    if term.match_expressions.is_empty() && term.match_fields.is_empty() {
        return false;
    }
    let labels = node_labels(node);
    let name = node
        .metadata
        .as_ref()
        .map(|m| m.name.as_str())
        .unwrap_or("");
    term.match_expressions
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && term.match_fields.iter().all(|r| {
            let value = (r.key == "metadata.name").then_some(name);
            value.is_some()
                && matches!(r.operator.as_str(), "In" | "NotIn")
                && requirement_matches(r, value)
        })
}

/// One requirement (In, NotIn, Exists, DoesNotExist, Gt, Lt) against a label value.
pub fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| r.values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !r.values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(want)) =
                (value.and_then(int), r.values.first().and_then(|s| int(s)))
            else {
                return false;
            };
            if r.values.len() != 1 {
                return false;
            }
            if r.operator == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        _ => false,
    }
}

/// Kubernetes' ToleratesTaint.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if !t.effect.is_empty() && t.effect != taint.effect {
        return false;
    }
    if !t.key.is_empty() && t.key != taint.key {
        return false;
    }
    match t.operator.as_str() {
        "Exists" => true,
        "" | "Equal" => t.value == taint.value,
        _ => false,
    }
}

/// The tolerations Kubernetes adds to every daemon pod, so node health and cordoning
/// never keep or evict a daemon (network-unavailable only for hostNetwork pods).
pub fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    use taint_keys::*;
    let exists = |key: &str, effect: &str| Toleration {
        key: key.into(),
        operator: "Exists".into(),
        effect: effect.into(),
        ..Default::default()
    };
    let mut out = vec![
        exists(NOT_READY, NO_EXECUTE),
        exists(UNREACHABLE, NO_EXECUTE),
        exists(DISK_PRESSURE, NO_SCHEDULE),
        exists(MEMORY_PRESSURE, NO_SCHEDULE),
        exists(PID_PRESSURE, NO_SCHEDULE),
        exists(UNSCHEDULABLE, NO_SCHEDULE),
    ];
    if host_network {
        out.push(exists(NETWORK_UNAVAILABLE, NO_SCHEDULE));
    }
    out
}

/// `spec` also tolerating the NoSchedule taints a node gets while it is not Ready
/// (not-ready, unreachable): how a DaemonSet judges a node that went silent, whose pod it
/// keeps counting and updates once the node is back.
pub fn tolerating_silence(spec: &PodSpec) -> PodSpec {
    let mut spec = spec.clone();
    for key in [taint_keys::NOT_READY, taint_keys::UNREACHABLE] {
        spec.tolerations.push(Toleration {
            key: key.into(),
            operator: "Exists".into(),
            effect: NO_SCHEDULE.into(),
            ..Default::default()
        });
    }
    spec
}

/// Adds the daemon tolerations a spec lacks (same key and effect already present: kept as is).
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    for t in daemon_tolerations(spec.host_network) {
        if !spec
            .tolerations
            .iter()
            .any(|have| have.key == t.key && have.effect == t.effect)
        {
            spec.tolerations.push(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::{Affinity, NodeAffinity, NodeSelector, NodeSpec, ObjectMeta};

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str, &str)]) -> Node {
        Node {
            metadata: Some(ObjectMeta {
                name: name.into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }),
            spec: Some(NodeSpec {
                taints: taints
                    .iter()
                    .map(|(k, v, e)| Taint {
                        key: k.to_string(),
                        value: v.to_string(),
                        effect: e.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn with_affinity(terms: Vec<NodeSelectorTerm>) -> PodSpec {
        PodSpec {
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: terms,
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    fn expr(reqs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: reqs,
            ..Default::default()
        }
    }

    #[test]
    fn requirement_operators() {
        let cases = [
            (req("k", "In", &["a", "b"]), Some("a"), true),
            (req("k", "In", &["a"]), Some("c"), false),
            (req("k", "In", &["a"]), None, false),
            (req("k", "NotIn", &["a"]), Some("b"), true),
            (req("k", "NotIn", &["a"]), Some("a"), false),
            (req("k", "NotIn", &["a"]), None, true),
            (req("k", "Exists", &[]), Some(""), true),
            (req("k", "Exists", &[]), None, false),
            (req("k", "DoesNotExist", &[]), None, true),
            (req("k", "DoesNotExist", &[]), Some("x"), false),
            (req("k", "Gt", &["5"]), Some("6"), true),
            (req("k", "Gt", &["5"]), Some("5"), false),
            (req("k", "Gt", &["5"]), Some("x"), false),
            (req("k", "Gt", &["5"]), None, false),
            (req("k", "Lt", &["5"]), Some("-1"), true),
            (req("k", "Lt", &["5"]), Some("7"), false),
            (req("k", "Lt", &["5", "6"]), Some("1"), false),
            (req("k", "Bogus", &[]), Some("1"), false),
        ];
        for (r, v, want) in cases {
            assert_eq!(
                requirement_matches(&r, v),
                want,
                "{} {:?} on {v:?}",
                r.operator,
                r.values
            );
        }
    }

    #[test]
    fn node_selector_must_match_every_label() {
        let n = node("n1", &[("disk", "ssd"), ("zone", "a")], &[]);
        let mut spec = PodSpec::default();
        assert!(selector_matches(&spec, &n));
        spec.node_selector.insert("disk".into(), "ssd".into());
        assert!(selector_matches(&spec, &n));
        spec.node_selector.insert("zone".into(), "b".into());
        assert!(!selector_matches(&spec, &n));
    }

    #[test]
    fn affinity_terms_are_ored_and_requirements_anded() {
        let n = node("n1", &[("disk", "ssd"), ("cores", "8")], &[]);
        let spec = with_affinity(vec![
            expr(vec![req("disk", "In", &["hdd"])]),
            expr(vec![
                req("disk", "In", &["ssd"]),
                req("cores", "Gt", &["4"]),
            ]),
        ]);
        assert!(selector_matches(&spec, &n));
        let spec = with_affinity(vec![expr(vec![
            req("disk", "In", &["ssd"]),
            req("cores", "Gt", &["8"]),
        ])]);
        assert!(!selector_matches(&spec, &n));
        assert!(
            !selector_matches(&with_affinity(vec![]), &n),
            "no terms matches nothing"
        );
        assert!(
            !selector_matches(&with_affinity(vec![NodeSelectorTerm::default()]), &n),
            "an empty term matches nothing"
        );
    }

    #[test]
    fn match_fields_on_node_name() {
        let field = |op: &str, v: &str| NodeSelectorTerm {
            match_fields: vec![req("metadata.name", op, &[v])],
            ..Default::default()
        };
        let n = node("n1", &[], &[]);
        assert!(selector_matches(
            &with_affinity(vec![field("In", "n1")]),
            &n
        ));
        assert!(!selector_matches(
            &with_affinity(vec![field("In", "n2")]),
            &n
        ));
        assert!(selector_matches(
            &with_affinity(vec![field("NotIn", "n2")]),
            &n
        ));
        let other_field = NodeSelectorTerm {
            match_fields: vec![req("metadata.uid", "In", &["x"])],
            ..Default::default()
        };
        assert!(!selector_matches(&with_affinity(vec![other_field]), &n));
    }

    #[test]
    fn toleration_matching() {
        let taint = Taint {
            key: "k".into(),
            value: "v".into(),
            effect: NO_SCHEDULE.into(),
            ..Default::default()
        };
        let t = |key: &str, op: &str, value: &str, effect: &str| Toleration {
            key: key.into(),
            operator: op.into(),
            value: value.into(),
            effect: effect.into(),
            ..Default::default()
        };
        assert!(tolerates(&t("k", "Equal", "v", "NoSchedule"), &taint));
        assert!(tolerates(&t("k", "", "v", ""), &taint));
        assert!(!tolerates(&t("k", "Equal", "w", ""), &taint));
        assert!(tolerates(&t("k", "Exists", "", ""), &taint));
        assert!(
            tolerates(&t("", "Exists", "", ""), &taint),
            "empty key + Exists tolerates everything"
        );
        assert!(!tolerates(&t("k", "Exists", "", "NoExecute"), &taint));
        assert!(!tolerates(&t("other", "Exists", "", ""), &taint));
    }

    #[test]
    fn taint_effects_decide_run_and_stay() {
        let spec = PodSpec::default();
        let f = fit(&spec, &node("n", &[], &[("gpu", "", "NoSchedule")]));
        assert_eq!(
            f,
            Fit {
                should_run: false,
                may_continue: true
            }
        );
        let f = fit(&spec, &node("n", &[], &[("gpu", "", "NoExecute")]));
        assert_eq!(
            f,
            Fit {
                should_run: false,
                may_continue: false
            }
        );
        let f = fit(&spec, &node("n", &[], &[("gpu", "", "PreferNoSchedule")]));
        assert_eq!(
            f,
            Fit {
                should_run: true,
                may_continue: true
            }
        );
        let mut tolerant = spec.clone();
        add_daemon_tolerations(&mut tolerant);
        let f = fit(
            &tolerant,
            &node(
                "n",
                &[],
                &[
                    (taint_keys::UNREACHABLE, "", "NoExecute"),
                    (taint_keys::UNSCHEDULABLE, "", "NoSchedule"),
                ],
            ),
        );
        assert_eq!(
            f,
            Fit {
                should_run: true,
                may_continue: true
            }
        );
        let f = fit(
            &tolerant,
            &node(
                "n",
                &[],
                &[(taint_keys::NETWORK_UNAVAILABLE, "", "NoSchedule")],
            ),
        );
        assert!(
            !f.should_run,
            "network-unavailable is tolerated only with hostNetwork"
        );
        let mut host = PodSpec {
            host_network: true,
            ..Default::default()
        };
        add_daemon_tolerations(&mut host);
        assert!(
            fit(
                &host,
                &node(
                    "n",
                    &[],
                    &[(taint_keys::NETWORK_UNAVAILABLE, "", "NoSchedule")]
                )
            )
            .should_run
        );
    }

    #[test]
    fn daemon_tolerations_are_not_duplicated() {
        let mut spec = PodSpec::default();
        add_daemon_tolerations(&mut spec);
        let n = spec.tolerations.len();
        assert_eq!(n, 6);
        add_daemon_tolerations(&mut spec);
        assert_eq!(spec.tolerations.len(), n);
    }
}
