//! A container's environment and command line: the standard pod variables, the image
//! entry's env, the container's env (with `fieldRef` sources), and Kubernetes'
//! `$(VAR)` expansion in env values, command and args.

use std::collections::BTreeMap;

use twinset_proto::v1::{Container, Pod};

/// PATH given to every container (the agent's own environment is not inherited).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Facts about the pod's placement that env can refer to.
#[derive(Clone, Debug, Default)]
pub struct Placement<'a> {
    /// The node's name.
    pub node_name: &'a str,
    /// The pod's IP.
    pub pod_ip: &'a str,
    /// The node's IP.
    pub host_ip: &'a str,
    /// The hostname the container sees (empty: the pod's, see
    /// [`crate::identity::hostname`]).
    pub hostname: &'a str,
}

/// An ordered environment where a later definition replaces an earlier one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Env(Vec<(String, String)>);

impl Env {
    /// Sets `k` (replacing an earlier value in place).
    pub fn set(&mut self, k: &str, v: String) {
        match self.0.iter_mut().find(|(n, _)| n == k) {
            Some(slot) => slot.1 = v,
            None => self.0.push((k.to_string(), v)),
        }
    }

    /// The value of `k`.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    /// The pairs in order.
    pub fn into_vec(self) -> Vec<(String, String)> {
        self.0
    }
}

/// Expands `$(NAME)` with values from `env`; `$$` is a literal `$`; references to
/// undefined names stay as written (Kubernetes' rules).
pub fn expand(s: &str, env: &Env) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("$(") {
            match after.find(')') {
                Some(end) => {
                    let name = &after[..end];
                    match env.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str(tail);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

fn bracketed<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let inner = path
        .strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')?;
    Some(inner.trim_matches(|c| c == '\'' || c == '"'))
}

/// The value of a `fieldRef.fieldPath`.
pub fn field_ref(pod: &Pod, path: &str, at: &Placement<'_>) -> Result<String, String> {
    let meta = pod.metadata.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    Ok(match path {
        "metadata.name" => meta.name,
        "metadata.namespace" => meta.namespace,
        "metadata.uid" => meta.uid,
        "spec.nodeName" => at.node_name.to_string(),
        "spec.serviceAccountName" => spec.service_account_name,
        "status.podIP" | "status.podIPs" => at.pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => at.host_ip.to_string(),
        p => {
            if let Some(k) = bracketed(p, "metadata.labels") {
                meta.labels.get(k).cloned().unwrap_or_default()
            } else if let Some(k) = bracketed(p, "metadata.annotations") {
                meta.annotations.get(k).cloned().unwrap_or_default()
            } else {
                return Err(format!("unsupported fieldRef fieldPath {p:?}"));
            }
        }
    })
}

/// The container's full environment: PATH, the image entry's env, POD_NAME,
/// POD_NAMESPACE, NODE_NAME, POD_IP, HOSTNAME, then the container's own env.
/// An unusable `valueFrom` is an error (the container waits with
/// CreateContainerConfigError).
pub fn container_env(
    pod: &Pod,
    c: &Container,
    image_env: &BTreeMap<String, String>,
    at: &Placement<'_>,
) -> Result<Env, String> {
    let meta = pod.metadata.clone().unwrap_or_default();
    let mut env = Env::default();
    env.set("PATH", DEFAULT_PATH.to_string());
    env.set("HOME", "/root".to_string());
    for (k, v) in image_env {
        env.set(k, v.clone());
    }
    let hostname = if at.hostname.is_empty() {
        crate::identity::hostname(pod)
    } else {
        at.hostname.to_string()
    };
    env.set("POD_NAME", meta.name.clone());
    env.set("POD_NAMESPACE", meta.namespace.clone());
    env.set("NODE_NAME", at.node_name.to_string());
    env.set("POD_IP", at.pod_ip.to_string());
    env.set("HOSTNAME", hostname);
    for var in &c.env {
        let value = match &var.value_from {
            Some(src) => match &src.field_ref {
                Some(f) => field_ref(pod, &f.field_path, at)
                    .map_err(|e| format!("env {}: {e}", var.name))?,
                None => {
                    return Err(format!(
                        "env {}: only valueFrom.fieldRef is supported",
                        var.name
                    ))
                }
            },
            None => expand(&var.value, &env),
        };
        env.set(&var.name, value);
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, ObjectMeta, PodSpec};

    fn pod() -> Pod {
        let mut labels = BTreeMap::new();
        labels.insert("app".to_string(), "web".to_string());
        Pod {
            metadata: Some(ObjectMeta {
                name: "web-0".into(),
                namespace: "prod".into(),
                uid: "u1".into(),
                labels,
                ..Default::default()
            }),
            spec: Some(PodSpec::default()),
            ..Default::default()
        }
    }

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: value.into(),
            value_from: None,
        }
    }

    fn field(name: &str, path: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: String::new(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: String::new(),
                    field_path: path.into(),
                }),
            }),
        }
    }

    const AT: Placement<'static> = Placement {
        node_name: "node1",
        pod_ip: "127.128.0.2",
        host_ip: "127.0.0.1",
        hostname: "",
    };

    #[test]
    fn expansion_rules() {
        let mut env = Env::default();
        env.set("A", "x".into());
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &env), "x-$(B)-$(A)-$");
        assert_eq!(expand("$(A", &env), "$(A");
        assert_eq!(expand("plain", &env), "plain");
    }

    #[test]
    fn standard_variables_and_overrides() {
        let c = Container {
            env: vec![
                var("GREETING", "hi $(POD_NAME)"),
                field("LABEL", "metadata.labels['app']"),
                var("NODE_NAME", "mine"),
            ],
            ..Default::default()
        };
        let mut image_env = BTreeMap::new();
        image_env.insert("PATH".to_string(), "/opt/bin".to_string());
        let env = container_env(&pod(), &c, &image_env, &AT).unwrap();
        assert_eq!(env.get("POD_NAME"), Some("web-0"));
        assert_eq!(env.get("POD_NAMESPACE"), Some("prod"));
        assert_eq!(env.get("POD_IP"), Some("127.128.0.2"));
        assert_eq!(env.get("HOSTNAME"), Some("web-0"));
        assert_eq!(env.get("PATH"), Some("/opt/bin"));
        assert_eq!(env.get("GREETING"), Some("hi web-0"));
        assert_eq!(env.get("LABEL"), Some("web"));
        assert_eq!(env.get("NODE_NAME"), Some("mine"));
    }

    #[test]
    fn unsupported_sources_are_errors() {
        let c = Container {
            env: vec![field("X", "status.phase")],
            ..Default::default()
        };
        assert!(container_env(&pod(), &c, &BTreeMap::new(), &AT)
            .unwrap_err()
            .contains("status.phase"));
        let c = Container {
            env: vec![EnvVar {
                name: "Y".into(),
                value: String::new(),
                value_from: Some(EnvVarSource { field_ref: None }),
            }],
            ..Default::default()
        };
        assert!(container_env(&pod(), &c, &BTreeMap::new(), &AT).is_err());
    }
}
