//! `twinset tree`: the guide's "Example Architecture (Text View)" drawn from live
//! objects — a box titled "Twinset Cluster" holding each DaemonSet with its pods and
//! their nodes, then each StatefulSet with its pods, their claims and nodes, each pod
//! marked with the STATUS and READY `twinset get pods` shows. Pure: objects in, text out.
use std::collections::HashMap;
use std::ffi::OsStr;
use twinset_control_plane::controllers::statefulset::identity::parse_ordinal;
use twinset_proto::columns::claim::Claim;
use twinset_proto::columns::{node, pod};
use twinset_proto::v1::{DaemonSet, Node, ObjectMeta, PersistentVolumeClaim, Pod, StatefulSet};

/// The box's title (the guide's says "Kubernetes Cluster").
pub const TITLE: &str = "Twinset Cluster";

/// The narrowest inside of the box, between its bars: the guide's 60 columns.
pub const MIN_WIDTH: usize = 60;

/// Everything the tree is drawn from, as listed from the cluster (any order).
#[derive(Debug, Clone, Copy)]
pub struct Objects<'a> {
    pub nodes: &'a [Node],
    pub daemon_sets: &'a [DaemonSet],
    pub stateful_sets: &'a [StatefulSet],
    pub pods: &'a [Pod],
    pub claims: &'a [PersistentVolumeClaim],
}

/// How the tree is drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Name sets as `namespace/name` (with `-A`).
    pub show_namespace: bool,
    /// Colour the status marks with ANSI escapes (only for a terminal).
    pub colour: bool,
}

/// Whether to colour: only when stdout is a terminal and `NO_COLOR` is unset or empty
/// (no-color.org), so piped output never carries escape codes.
pub fn use_colour(stdout_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stdout_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// The tree of `objects` as text: the box, DaemonSets first, then StatefulSets, each
/// sorted by namespace and name, with a blank line between sets.
pub fn render(objects: &Objects, opts: Options) -> String {
    let nodes: HashMap<&str, &Node> = objects
        .nodes
        .iter()
        .map(|n| (meta(&n.metadata).name.as_str(), n))
        .collect();
    let claims: HashMap<(&str, &str), &PersistentVolumeClaim> = objects
        .claims
        .iter()
        .map(|c| {
            let m = meta(&c.metadata);
            ((m.namespace.as_str(), m.name.as_str()), c)
        })
        .collect();
    let view = View {
        objects,
        nodes,
        claims,
        opts,
    };

    let mut daemon_sets: Vec<&DaemonSet> = objects.daemon_sets.iter().collect();
    daemon_sets.sort_by_key(|s| ns_name(&s.metadata));
    let mut stateful_sets: Vec<&StatefulSet> = objects.stateful_sets.iter().collect();
    stateful_sets.sort_by_key(|s| ns_name(&s.metadata));

    let mut sections: Vec<Vec<Line>> = Vec::new();
    sections.extend(daemon_sets.into_iter().map(|s| view.daemon_set(s)));
    sections.extend(stateful_sets.into_iter().map(|s| view.stateful_set(s)));
    let mut body: Vec<Line> = Vec::new();
    for (i, section) in sections.into_iter().enumerate() {
        if i > 0 {
            body.push(Line::default());
        }
        body.extend(section);
    }
    draw_box(&body, opts.colour)
}

/// How a mark reads: plain, good (green), waiting (yellow) or failed (red).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tone {
    Plain,
    Good,
    Warn,
    Bad,
}

impl Tone {
    fn escape(self) -> Option<&'static str> {
        match self {
            Tone::Plain => None,
            Tone::Good => Some("\x1b[32m"),
            Tone::Warn => Some("\x1b[33m"),
            Tone::Bad => Some("\x1b[31m"),
        }
    }
}

const RESET: &str = "\x1b[0m";

/// One line inside the box, as runs of text with their tone.
#[derive(Debug, Clone, Default)]
struct Line(Vec<(String, Tone)>);

impl Line {
    fn new(text: impl Into<String>) -> Self {
        Line(vec![(text.into(), Tone::Plain)])
    }

    fn add(mut self, text: impl Into<String>, tone: Tone) -> Self {
        self.0.push((text.into(), tone));
        self
    }

    fn extend(mut self, other: Line) -> Self {
        self.0.extend(other.0);
        self
    }

    /// Printed width: names are DNS labels and marks ASCII, so one column per char.
    fn width(&self) -> usize {
        self.0.iter().map(|(t, _)| t.chars().count()).sum()
    }

    fn write(&self, out: &mut String, colour: bool) {
        for (text, tone) in &self.0 {
            match tone.escape().filter(|_| colour && !text.is_empty()) {
                Some(esc) => {
                    out.push_str(esc);
                    out.push_str(text);
                    out.push_str(RESET);
                }
                None => out.push_str(text),
            }
        }
    }
}

/// The guide's box around `body`: as wide as the longest line plus a space each side,
/// at least [`MIN_WIDTH`] inside.
fn draw_box(body: &[Line], colour: bool) -> String {
    let width = body
        .iter()
        .map(|l| l.width() + 2)
        .chain([MIN_WIDTH, TITLE.len() + 2])
        .max()
        .unwrap_or(MIN_WIDTH);
    let rule = "-".repeat(width);
    let left = (width - TITLE.len()) / 2;
    let mut out = String::new();
    out.push_str(&format!("+{rule}+\n"));
    out.push_str(&format!(
        "|{}{TITLE}{}|\n",
        " ".repeat(left),
        " ".repeat(width - TITLE.len() - left)
    ));
    out.push_str(&format!("|{rule}|\n"));
    for line in body {
        out.push_str("| ");
        line.write(&mut out, colour);
        out.push_str(&" ".repeat(width - 1 - line.width()));
        out.push_str("|\n");
    }
    out.push_str(&format!("+{rule}+\n"));
    out
}

struct View<'a> {
    objects: &'a Objects<'a>,
    nodes: HashMap<&'a str, &'a Node>,
    claims: HashMap<(&'a str, &'a str), &'a PersistentVolumeClaim>,
    opts: Options,
}

impl View<'_> {
    fn daemon_set(&self, set: &DaemonSet) -> Vec<Line> {
        let st = set.status.clone().unwrap_or_default();
        let mut pods = self.owned(&set.metadata);
        pods.sort_by_key(|p| {
            let node = node_name(p);
            (node.is_empty(), node, meta(&p.metadata).name.as_str())
        });
        let lines = pods
            .iter()
            .map(|p| self.pod_line(p, Line::default()))
            .collect();
        self.section(
            "DaemonSet",
            &set.metadata,
            st.number_ready,
            st.desired_number_scheduled,
            lines,
        )
    }

    fn stateful_set(&self, set: &StatefulSet) -> Vec<Line> {
        let m = meta(&set.metadata);
        let ready = set.status.as_ref().map_or(0, |s| s.ready_replicas);
        let desired = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let mut pods = self.owned(&set.metadata);
        pods.sort_by_key(|p| {
            let name = meta(&p.metadata).name.as_str();
            (
                parse_ordinal(&m.name, name).map_or((1, 0), |o| (0, o)),
                name,
            )
        });
        let lines = pods
            .iter()
            .map(|p| self.pod_line(p, self.claims_of(p)))
            .collect();
        self.section("StatefulSet", &set.metadata, ready, desired, lines)
    }

    /// A set's heading (`DaemonSet: name (r/d ready)`) and its pod lines, or a line
    /// saying it has none; the heading turns red when any pod failed.
    fn section(
        &self,
        kind: &str,
        set: &Option<ObjectMeta>,
        ready: i32,
        desired: i32,
        pods: Vec<(Line, Tone)>,
    ) -> Vec<Line> {
        let m = meta(set);
        let name = if self.opts.show_namespace {
            format!("{}/{}", m.namespace, m.name)
        } else {
            m.name.clone()
        };
        let tone = if pods.iter().any(|(_, t)| *t == Tone::Bad) {
            Tone::Bad
        } else if ready == desired {
            Tone::Good
        } else {
            Tone::Warn
        };
        let mut lines =
            vec![Line::new(format!("{kind}: {name} "))
                .add(format!("({ready}/{desired} ready)"), tone)];
        if pods.is_empty() {
            let tone = if desired > 0 { Tone::Warn } else { Tone::Plain };
            lines.push(Line::new("  ").add("(no pods)", tone));
        }
        lines.extend(pods.into_iter().map(|(l, _)| l));
        lines
    }

    /// The pods whose controller reference is the set's uid, in the set's namespace.
    fn owned(&self, set: &Option<ObjectMeta>) -> Vec<&Pod> {
        let m = meta(set);
        if m.uid.is_empty() {
            return Vec::new();
        }
        self.objects
            .pods
            .iter()
            .filter(|p| {
                let pm = meta(&p.metadata);
                pm.namespace == m.namespace && pm.is_controlled_by(&m.uid)
            })
            .collect()
    }

    /// `  -> Pod: NAME (PLACEMENT) STATUS READY` and the pod's tone; `claims` (maybe
    /// empty) comes first in the parentheses, then the node.
    fn pod_line(&self, p: &Pod, claims: Line) -> (Line, Tone) {
        let summary = pod::summary(p);
        let tone = pod_tone(&summary);
        let mut placement = claims;
        if !placement.0.is_empty() {
            placement = placement.add(", ", Tone::Plain);
        }
        let line = Line::new(format!("  -> Pod: {} (", meta(&p.metadata).name))
            .extend(placement)
            .extend(self.node_of(p))
            .add(") ", Tone::Plain)
            .add(format!("{} {}", summary.status, summary.ready), tone);
        (line, tone)
    }

    /// `runs on NODE` (with the node's status unless Ready, or that it is gone), or
    /// `not scheduled` for a pod without a node.
    fn node_of(&self, p: &Pod) -> Line {
        let name = node_name(p);
        if name.is_empty() {
            return Line::default().add("not scheduled", Tone::Warn);
        }
        let line = Line::new(format!("runs on {name}"));
        match self.nodes.get(name) {
            None => line.add(", ", Tone::Plain).add("node not found", Tone::Bad),
            Some(n) => match node::status(n) {
                s if s == "Ready" => line,
                s => {
                    let tone = if s.starts_with("Ready") {
                        Tone::Warn
                    } else {
                        Tone::Bad
                    };
                    line.add(", ", Tone::Plain).add(format!("node {s}"), tone)
                }
            },
        }
    }

    /// `with PVC a, b (Pending)`: every claim the pod's volumes name, in volume order,
    /// each with its phase unless Bound, or `(missing)` when no such claim exists.
    fn claims_of(&self, p: &Pod) -> Line {
        let pm = meta(&p.metadata);
        let names: Vec<&str> = p
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter())
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .map(|c| c.claim_name.as_str())
            .collect();
        if names.is_empty() {
            return Line::default();
        }
        let mut line = Line::new("with PVC ");
        for (i, name) in names.into_iter().enumerate() {
            if i > 0 {
                line = line.add(", ", Tone::Plain);
            }
            line = line.add(name, Tone::Plain);
            let mark = match self.claims.get(&(pm.namespace.as_str(), name)) {
                None => Some(("missing".to_string(), Tone::Bad)),
                Some(c) => match Claim::of(c).status_column() {
                    s if s == "Bound" => None,
                    s if s == "Lost" => Some((s, Tone::Bad)),
                    s if s.is_empty() => Some(("no phase".to_string(), Tone::Warn)),
                    s => Some((s, Tone::Warn)),
                },
            };
            if let Some((text, tone)) = mark {
                line = line.add(" ", Tone::Plain).add(format!("({text})"), tone);
            }
        }
        line
    }
}

/// Green for a Running pod with every container ready, red for a failure, yellow for
/// anything on its way (Pending, ContainerCreating, Terminating, NotReady, ...).
fn pod_tone(summary: &pod::PodSummary) -> Tone {
    let all_ready = summary
        .ready
        .split_once('/')
        .is_some_and(|(r, t)| r == t && t != "0");
    if failed(&summary.status) {
        Tone::Bad
    } else if summary.status == "Running" && all_ready {
        Tone::Good
    } else {
        Tone::Warn
    }
}

/// Whether a pod STATUS names a failure: a back-off, an error, a failed phase, a
/// killed or non-zero exit, a lost node; `Init:` statuses by what follows.
fn failed(status: &str) -> bool {
    const FAILURES: &[&str] = &[
        "Failed",
        "OOMKilled",
        "ErrImagePull",
        "InvalidImageName",
        "ImageNotInTable",
        "ContainerCannotRun",
        "Evicted",
        "NodeLost",
        "Unknown",
    ];
    if let Some(rest) = status.strip_prefix("Init:") {
        return failed(rest);
    }
    status.ends_with("BackOff")
        || status.ends_with("Error")
        || status.starts_with("ExitCode:")
        || status.starts_with("Signal:")
        || FAILURES.contains(&status)
}

fn meta(m: &Option<ObjectMeta>) -> &ObjectMeta {
    static EMPTY: std::sync::OnceLock<ObjectMeta> = std::sync::OnceLock::new();
    m.as_ref()
        .unwrap_or_else(|| EMPTY.get_or_init(ObjectMeta::default))
}

fn ns_name(m: &Option<ObjectMeta>) -> (String, String) {
    let m = meta(m);
    (m.namespace.clone(), m.name.clone())
}

fn node_name(p: &Pod) -> &str {
    p.spec.as_ref().map_or("", |s| s.node_name.as_str())
}

#[cfg(test)]
mod tests;
