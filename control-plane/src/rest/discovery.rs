//! Discovery: `/version`, `/api`, `/apis` and each group version's resource list, built
//! from the one kind table (`twinset_proto::Kind`), with the verbs this server really
//! serves over REST.

use serde_json::{json, Value};
use twinset_proto::Kind;

use super::path::GROUP_VERSIONS;

/// The Kubernetes version whose API this server follows (kubectl's version skew and the
/// kubectl dispatcher's choice of a bundled kubectl go by it).
pub const KUBERNETES_VERSION: (&str, &str) = ("1", "31");

/// The verbs served on a collection or an object over REST.
pub(crate) const VERBS: [&str; 7] = [
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// Kinds kubectl's `all` category (`kubectl get all`) includes.
const IN_ALL: [Kind; 4] = [Kind::Pod, Kind::Service, Kind::DaemonSet, Kind::StatefulSet];

/// `/version`.
pub fn version() -> Value {
    let (major, minor) = KUBERNETES_VERSION;
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": format!("v{major}.{minor}.0"),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, twinset_proto::kinds::kube_arch()),
        "twinsetVersion": env!("CARGO_PKG_VERSION"),
    })
}

/// `/api`.
pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [],
    })
}

/// `/apis`: the groups that have resources. `autoscaling/v1` is served (its Scale is the
/// kind of `statefulsets/scale`) but not listed: it has no resources of its own here, and
/// kubectl refuses a listed group with an empty resource list.
pub fn groups() -> Value {
    let groups: Vec<Value> = GROUP_VERSIONS
        .iter()
        .filter(|(g, _)| !g.is_empty() && Kind::ALL.iter().any(|k| k.group() == *g))
        .map(|(g, v)| {
            let gv = json!({ "groupVersion": format!("{g}/{v}"), "version": v });
            json!({ "name": g, "versions": [gv.clone()], "preferredVersion": gv })
        })
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

fn resource(kind: Kind) -> Value {
    let mut r = json!({
        "name": kind.resource(),
        "singularName": kind.singular(),
        "namespaced": kind.namespaced(),
        "kind": kind.as_str(),
        "verbs": VERBS,
    });
    if !kind.short_names().is_empty() {
        r["shortNames"] = json!(kind.short_names());
    }
    if IN_ALL.contains(&kind) {
        r["categories"] = json!(["all"]);
    }
    r
}

fn subresource(kind: Kind, sub: &str, sub_kind: &str, verbs: &[&str]) -> Value {
    json!({
        "name": format!("{}/{sub}", kind.resource()),
        "singularName": "",
        "namespaced": kind.namespaced(),
        "kind": sub_kind,
        "verbs": verbs,
    })
}

/// The resources of `group`/`version` (None when it is not served).
pub fn resources(group: &str, version: &str) -> Option<Value> {
    if !GROUP_VERSIONS.contains(&(group, version)) {
        return None;
    }
    let mut list = Vec::new();
    for kind in Kind::ALL.into_iter().filter(|k| k.group() == group) {
        list.push(resource(kind));
        match kind {
            Kind::Pod => {
                // As kube-apiserver lists it: kubectl drain looks for it (name, kind,
                // group and version) to choose eviction over delete.
                let mut eviction = subresource(kind, "eviction", "Eviction", &["create"]);
                eviction["group"] = json!("policy");
                eviction["version"] = json!("v1");
                list.push(eviction);
                list.push(subresource(kind, "log", "Pod", &["get"]));
                list.push(subresource(kind, "status", "Pod", &["get"]));
            }
            Kind::DaemonSet | Kind::StatefulSet | Kind::Node | Kind::PersistentVolumeClaim => {
                list.push(subresource(kind, "status", kind.as_str(), &["get"]));
            }
            _ => {}
        }
        if kind == Kind::StatefulSet {
            let mut scale = subresource(kind, "scale", "Scale", &["get", "patch", "update"]);
            scale["group"] = json!("autoscaling");
            scale["version"] = json!("v1");
            list.push(scale);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": list,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &Value) -> Vec<String> {
        v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn each_group_lists_its_kinds_with_short_names_and_subresources() {
        let core = resources("", "v1").unwrap();
        assert_eq!(core["groupVersion"], "v1");
        let n = names(&core);
        for want in [
            "namespaces",
            "nodes",
            "pods",
            "pods/log",
            "services",
            "persistentvolumeclaims",
            "events",
        ] {
            assert!(n.contains(&want.to_string()), "{want} in {n:?}");
        }
        assert!(!n.iter().any(|r| r.starts_with("bootstrap")), "{n:?}");
        let apps = resources("apps", "v1").unwrap();
        assert_eq!(apps["groupVersion"], "apps/v1");
        let ds = &apps["resources"][0];
        assert_eq!(ds["name"], "daemonsets");
        assert_eq!(ds["shortNames"], json!(["ds"]));
        assert_eq!(ds["categories"], json!(["all"]));
        assert_eq!(ds["namespaced"], true);
        let scale = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "statefulsets/scale")
            .unwrap();
        assert_eq!(
            (&scale["group"], &scale["version"], &scale["kind"]),
            (&json!("autoscaling"), &json!("v1"), &json!("Scale"))
        );
        let eviction = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods/eviction")
            .unwrap();
        assert_eq!(
            eviction,
            &json!({
                "name": "pods/eviction", "singularName": "", "namespaced": true,
                "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]
            })
        );
        assert_eq!(
            names(&resources("autoscaling", "v1").unwrap()),
            Vec::<String>::new()
        );
        assert!(resources("batch", "v1").is_none());
        let node = &core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "nodes")
            .unwrap()
            .clone();
        assert_eq!(node["namespaced"], false);
        assert_eq!(node["shortNames"], json!(["no"]));
    }

    #[test]
    fn version_and_groups() {
        let v = version();
        assert_eq!(v["gitVersion"], "v1.31.0");
        assert_eq!(v["major"], "1");
        let g = groups();
        let names: Vec<&str> = g["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["apps"]);
        assert_eq!(
            g["groups"][0]["preferredVersion"]["groupVersion"],
            "apps/v1"
        );
    }
}
