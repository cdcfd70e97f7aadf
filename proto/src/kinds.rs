//! The kinds Twinset serves, with the names kubectl users type for them.

use std::fmt;

/// One of the object kinds in the `twinset.v1` API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Namespace,
    Node,
    Pod,
    DaemonSet,
    StatefulSet,
    Service,
    PersistentVolumeClaim,
    ControllerRevision,
    Event,
    /// A join token's record: stored like the others, never served by the generic
    /// Cluster calls (see [`Kind::served`]).
    BootstrapToken,
}

/// (kind, apiVersion, plural resource, qualified name, namespaced, extra names users type)
type Row = (
    Kind,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
);

const TABLE: &[Row] = &[
    (
        Kind::Namespace,
        "v1",
        "namespaces",
        "namespace",
        false,
        &["ns"],
    ),
    (Kind::Node, "v1", "nodes", "node", false, &["no"]),
    (Kind::Pod, "v1", "pods", "pod", true, &["po"]),
    (
        Kind::DaemonSet,
        "apps/v1",
        "daemonsets",
        "daemonset.apps",
        true,
        &["ds"],
    ),
    (
        Kind::StatefulSet,
        "apps/v1",
        "statefulsets",
        "statefulset.apps",
        true,
        &["sts"],
    ),
    (Kind::Service, "v1", "services", "service", true, &["svc"]),
    (
        Kind::PersistentVolumeClaim,
        "v1",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        true,
        &["pvc"],
    ),
    (
        Kind::ControllerRevision,
        "apps/v1",
        "controllerrevisions",
        "controllerrevision.apps",
        true,
        &[],
    ),
    (Kind::Event, "v1", "events", "event", true, &["ev"]),
    (
        Kind::BootstrapToken,
        "bootstrap.twinset.io/v1",
        "bootstraptokens",
        "bootstraptoken.bootstrap.twinset.io",
        false,
        &[],
    ),
];

impl Kind {
    /// Every kind the API serves, in a stable order (the internal ones are left out).
    pub const ALL: [Kind; 9] = [
        Kind::Namespace,
        Kind::Node,
        Kind::Pod,
        Kind::DaemonSet,
        Kind::StatefulSet,
        Kind::Service,
        Kind::PersistentVolumeClaim,
        Kind::ControllerRevision,
        Kind::Event,
    ];

    /// Kinds the store holds but the generic Cluster calls never serve (Get, List,
    /// Watch, Apply, Update, Delete refuse them; manifests cannot name them).
    pub const INTERNAL: [Kind; 1] = [Kind::BootstrapToken];

    /// True for the kinds clients may read and write through the generic calls.
    pub fn served(self) -> bool {
        !Kind::INTERNAL.contains(&self)
    }

    fn row(self) -> &'static Row {
        TABLE
            .iter()
            .find(|r| r.0 == self)
            .expect("every kind has a row")
    }

    /// The Kubernetes kind name, e.g. "DaemonSet".
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Node => "Node",
            Kind::Pod => "Pod",
            Kind::DaemonSet => "DaemonSet",
            Kind::StatefulSet => "StatefulSet",
            Kind::Service => "Service",
            Kind::PersistentVolumeClaim => "PersistentVolumeClaim",
            Kind::ControllerRevision => "ControllerRevision",
            Kind::Event => "Event",
            Kind::BootstrapToken => "BootstrapToken",
        }
    }

    /// The apiVersion manifests of this kind carry ("apps/v1" or "v1").
    pub fn api_version(self) -> &'static str {
        self.row().1
    }

    /// The plural resource name, as in error messages (`daemonsets.apps "x" not found` uses [`Kind::group_resource`]).
    pub fn resource(self) -> &'static str {
        self.row().2
    }

    /// Resource and group as kubectl prints them in errors: "daemonsets.apps", "pods".
    pub fn group_resource(self) -> String {
        match self.api_version().split_once('/') {
            Some((group, _)) => format!("{}.{group}", self.resource()),
            None => self.resource().to_string(),
        }
    }

    /// What kubectl prints before `/name created`: "daemonset.apps", "pod".
    pub fn qualified(self) -> &'static str {
        self.row().3
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        self.row().4
    }

    /// Its short names (`ds`, `po`, …), as discovery lists them.
    pub fn short_names(self) -> &'static [&'static str] {
        self.row().5
    }

    /// The resource's singular name (`daemonset`).
    pub fn singular(self) -> &'static str {
        let q = self.qualified();
        q.split('.').next().unwrap_or(q)
    }

    /// The API group (`apps`; empty for the core group).
    pub fn group(self) -> &'static str {
        self.api_version()
            .split_once('/')
            .map_or("", |(group, _)| group)
    }

    /// Parses what a user types: kind, singular, plural, short name or qualified name, any
    /// case. Internal kinds are not found.
    pub fn parse(word: &str) -> Option<Kind> {
        let w = word.to_ascii_lowercase();
        let w = w
            .split_once('.')
            .map(|(head, _)| head.to_string())
            .unwrap_or(w);
        TABLE
            .iter()
            .filter(|row| row.0.served())
            .find_map(|(k, _, plural, qualified, _, short)| {
                let singular = qualified.split('.').next().unwrap_or(qualified);
                (w == *singular || w == *plural || short.contains(&w.as_str())).then_some(*k)
            })
    }

    /// The served kind named exactly as in a manifest's `kind:` field.
    pub fn from_kind_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// The Kubernetes name of this machine's architecture (`amd64`, `arm64`, ...): the
/// nodes' `kubernetes.io/arch` label and the platform `/version` reports.
pub fn kube_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_user_words() {
        for (w, k) in [
            ("ds", Kind::DaemonSet),
            ("daemonsets", Kind::DaemonSet),
            ("DaemonSet", Kind::DaemonSet),
            ("daemonset.apps", Kind::DaemonSet),
            ("po", Kind::Pod),
            ("pods", Kind::Pod),
            ("no", Kind::Node),
            ("ns", Kind::Namespace),
            ("sts", Kind::StatefulSet),
            ("pvc", Kind::PersistentVolumeClaim),
            ("svc", Kind::Service),
            ("ev", Kind::Event),
            ("controllerrevisions", Kind::ControllerRevision),
        ] {
            assert_eq!(Kind::parse(w), Some(k), "{w}");
        }
        assert_eq!(Kind::parse("deployment"), None);
        for internal in ["bootstraptoken", "bootstraptokens", "BootstrapToken"] {
            assert_eq!(Kind::parse(internal), None, "{internal} is not served");
        }
        assert_eq!(Kind::from_kind_name("BootstrapToken"), None);
        assert!(!Kind::BootstrapToken.served() && Kind::Pod.served());
    }

    #[test]
    fn names_as_kubectl() {
        assert_eq!(Kind::DaemonSet.group_resource(), "daemonsets.apps");
        assert_eq!(Kind::Pod.group_resource(), "pods");
        assert_eq!(Kind::StatefulSet.qualified(), "statefulset.apps");
        assert!(!Kind::Node.namespaced());
    }
}
