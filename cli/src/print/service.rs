//! What kubectl's describe shows of a Service beyond its table cells (describe.go
//! describeService): target ports, and its endpoints as the endpoints controller would
//! list them: Twinset has no Endpoints objects, so they are derived from the selected
//! pods. The cells live in [`twinset_proto::columns::service`].
use super::format::NONE;
use twinset_proto::columns::service::protocol;
pub use twinset_proto::columns::service::{cluster_ips, type_of};
use twinset_proto::v1::int_or_string::Value;
use twinset_proto::v1::{Pod, ServicePort, ServiceSpec};

/// How many endpoints kubectl's describe lists before `+ N more...`.
const MAX_ENDPOINTS: usize = 3;

/// A service port's `TargetPort:` value in describe: `3306/TCP` or `mysql/TCP`.
pub fn target_port(p: &ServicePort) -> String {
    let target = match p.target_port.as_ref().and_then(|t| t.value.as_ref()) {
        Some(Value::IntVal(i)) => i.to_string(),
        Some(Value::StrVal(s)) => s.clone(),
        None => p.port.to_string(),
    };
    format!("{target}/{}", protocol(p))
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.r#type == "Ready" && c.status == "True")
    })
}

/// Whether the endpoints controller lists `pod` as a ready address of a service:
/// it has an IP, is neither finished nor being deleted, and is Ready (or the service
/// publishes not-ready addresses).
fn ready_address(spec: &ServiceSpec, pod: &Pod) -> Option<String> {
    let st = pod.status.as_ref()?;
    if st.pod_ip.is_empty() || st.phase == "Succeeded" || st.phase == "Failed" {
        return None;
    }
    let deleting = pod
        .metadata
        .as_ref()
        .is_some_and(|m| !m.deletion_timestamp.is_empty());
    if spec.publish_not_ready_addresses {
        return Some(st.pod_ip.clone());
    }
    (!deleting && pod_ready(pod)).then(|| st.pod_ip.clone())
}

/// The port a pod serves a service port on: the target port number, or the pod's
/// container port of that name (no port: the pod is not an endpoint of it).
fn resolve_port(p: &ServicePort, pod: &Pod) -> Option<i32> {
    match p.target_port.as_ref().and_then(|t| t.value.as_ref()) {
        Some(Value::IntVal(i)) => Some(*i),
        None => Some(p.port),
        Some(Value::StrVal(name)) => pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter())
            .find(|cp| &cp.name == name && (cp.protocol.is_empty() || cp.protocol == protocol(p)))
            .map(|cp| cp.container_port),
    }
}

/// The `Endpoints:` value of kubectl's describe for one service port (or, for a service
/// without ports, the bare addresses): ready pod `IP:port` sorted by IP, at most three,
/// then ` + N more...`; `<none>` when there is no ready endpoint. `pods` are the pods the
/// service's selector matches; a service without a selector has no managed endpoints.
pub fn endpoints(spec: &ServiceSpec, port: Option<&ServicePort>, pods: &[Pod]) -> String {
    if spec.selector.is_empty() {
        return NONE.to_string();
    }
    let mut addresses: Vec<(String, Option<i32>)> = Vec::new();
    for pod in pods {
        let Some(ip) = ready_address(spec, pod) else {
            continue;
        };
        match port {
            None => addresses.push((ip, None)),
            Some(p) => {
                if let Some(n) = resolve_port(p, pod) {
                    addresses.push((ip, Some(n)));
                }
            }
        }
    }
    if addresses.is_empty() {
        return NONE.to_string();
    }
    addresses.sort();
    let count = addresses.len();
    let shown: Vec<String> = addresses
        .iter()
        .take(MAX_ENDPOINTS)
        .map(|(ip, port)| match port {
            Some(p) => format!("{ip}:{p}"),
            None => ip.clone(),
        })
        .collect();
    let list = shown.join(",");
    if count > MAX_ENDPOINTS {
        format!("{list} + {} more...", count - MAX_ENDPOINTS)
    } else {
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::{
        Container, ContainerPort, IntOrString, ObjectMeta, PodCondition, PodSpec, PodStatus,
    };

    fn pod(ip: &str, ready: bool) -> Pod {
        Pod {
            metadata: Some(ObjectMeta::default()),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "mysql".into(),
                    ports: vec![ContainerPort {
                        name: "db".into(),
                        container_port: 3306,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: "Running".into(),
                pod_ip: ip.into(),
                conditions: vec![PodCondition {
                    r#type: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn spec(ports: Vec<ServicePort>) -> ServiceSpec {
        let mut s = ServiceSpec {
            ports,
            cluster_ip: "None".into(),
            ..Default::default()
        };
        s.selector.insert("app".into(), "mysql".into());
        s
    }

    fn port(target: Option<IntOrString>) -> ServicePort {
        ServicePort {
            port: 3306,
            protocol: "TCP".into(),
            target_port: target,
            ..Default::default()
        }
    }

    #[test]
    fn target_port_number_or_name() {
        assert_eq!(target_port(&port(Some(IntOrString::int(3307)))), "3307/TCP");
        assert_eq!(target_port(&port(None)), "3306/TCP");
        let named = port(Some(IntOrString {
            value: Some(Value::StrVal("db".into())),
        }));
        assert_eq!(target_port(&named), "db/TCP");
    }

    #[test]
    fn endpoints_ready_sorted_and_capped() {
        let p = port(Some(IntOrString::int(3306)));
        let s = spec(vec![p.clone()]);
        let pods = vec![
            pod("127.128.1.3", true),
            pod("127.128.0.2", true),
            pod("127.128.2.2", false),
            pod("127.128.1.2", true),
            pod("127.128.3.2", true),
        ];
        assert_eq!(
            endpoints(&s, Some(&p), &pods),
            "127.128.0.2:3306,127.128.1.2:3306,127.128.1.3:3306 + 1 more..."
        );
        assert_eq!(endpoints(&s, None, &pods[..2]), "127.128.0.2,127.128.1.3");
        assert_eq!(endpoints(&s, Some(&p), &pods[2..3]), "<none>");
        let named = port(Some(IntOrString {
            value: Some(Value::StrVal("db".into())),
        }));
        assert_eq!(endpoints(&s, Some(&named), &pods[..1]), "127.128.1.3:3306");
        let missing = port(Some(IntOrString {
            value: Some(Value::StrVal("http".into())),
        }));
        assert_eq!(endpoints(&s, Some(&missing), &pods[..1]), "<none>");
        let no_selector = ServiceSpec::default();
        assert_eq!(endpoints(&no_selector, None, &pods), "<none>");
    }
}
