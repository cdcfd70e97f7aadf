//! The Service columns and what kubectl shows of a service (printers.go printService).
use super::format::{self, NONE};
use super::{Column, AGE, NAME};
use crate::v1::{Service, ServicePort, ServiceSpec};
use std::time::SystemTime;

/// Service columns: NAME, TYPE, CLUSTER-IP, EXTERNAL-IP, PORT(S), AGE | wide: SELECTOR.
pub const COLUMNS: &[Column] = &[
    NAME,
    Column::string("Type", "How the service is exposed (ClusterIP when unset)."),
    Column::string(
        "Cluster-IP",
        "The service's cluster IP, None when headless.",
    ),
    Column::string("External-IP", "The service's external addresses."),
    Column::string("Port(s)", "The service's ports and protocols."),
    AGE,
    Column::string("Selector", "The labels of the pods the service routes to.").wide(),
];

/// The cells of one service, matching [`COLUMNS`].
pub fn cells(svc: &Service, now: SystemTime) -> Vec<String> {
    let meta = svc.metadata.clone().unwrap_or_default();
    let spec = svc.spec.clone().unwrap_or_default();
    vec![
        meta.name,
        type_of(&spec),
        cluster_ip_column(&spec),
        external_ip_column(&spec),
        ports_column(&spec),
        format::age_at(&meta.creation_timestamp, now),
        format::labels(&spec.selector),
    ]
}

/// The service type, `ClusterIP` when unset (the API default).
pub fn type_of(spec: &ServiceSpec) -> String {
    if spec.r#type.is_empty() {
        "ClusterIP".to_string()
    } else {
        spec.r#type.clone()
    }
}

/// `spec.clusterIPs`, or `[spec.clusterIP]` when only that is set (the API server fills
/// one from the other; `None` for a headless service).
pub fn cluster_ips(spec: &ServiceSpec) -> Vec<String> {
    if !spec.cluster_ips.is_empty() {
        spec.cluster_ips.clone()
    } else if !spec.cluster_ip.is_empty() {
        vec![spec.cluster_ip.clone()]
    } else {
        Vec::new()
    }
}

/// The CLUSTER-IP column: the first cluster IP (`None` when headless), else `<none>`.
pub fn cluster_ip_column(spec: &ServiceSpec) -> String {
    cluster_ips(spec)
        .into_iter()
        .next()
        .unwrap_or_else(|| NONE.to_string())
}

/// The EXTERNAL-IP column (getServiceExternalIP): `<pending>` for a LoadBalancer that has
/// no ingress yet, `<none>` otherwise (Twinset services have no external IPs).
pub fn external_ip_column(spec: &ServiceSpec) -> String {
    if spec.r#type == "LoadBalancer" {
        "<pending>".to_string()
    } else {
        NONE.to_string()
    }
}

/// A service port's protocol, `TCP` when unset (the API default).
pub fn protocol(p: &ServicePort) -> &str {
    if p.protocol.is_empty() {
        "TCP"
    } else {
        &p.protocol
    }
}

/// The PORT(S) column (makePortString): `3306/TCP`, `80:30080/TCP`, comma-joined; `<none>`.
pub fn ports_column(spec: &ServiceSpec) -> String {
    let ports: Vec<String> = spec
        .ports
        .iter()
        .map(|p| {
            if p.node_port > 0 {
                format!("{}:{}/{}", p.port, p.node_port, protocol(p))
            } else {
                format!("{}/{}", p.port, protocol(p))
            }
        })
        .collect();
    if ports.is_empty() {
        NONE.to_string()
    } else {
        ports.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(node_port: i32) -> ServicePort {
        ServicePort {
            port: 3306,
            node_port,
            protocol: "TCP".into(),
            ..Default::default()
        }
    }

    #[test]
    fn columns() {
        let mut s = ServiceSpec {
            ports: vec![port(0)],
            cluster_ip: "None".into(),
            ..Default::default()
        };
        s.selector.insert("app".into(), "mysql".into());
        assert_eq!(type_of(&s), "ClusterIP");
        assert_eq!(cluster_ip_column(&s), "None");
        assert_eq!(external_ip_column(&s), "<none>");
        assert_eq!(ports_column(&s), "3306/TCP");
        assert_eq!(ports_column(&ServiceSpec::default()), "<none>");
        assert_eq!(cluster_ip_column(&ServiceSpec::default()), "<none>");
        s.ports = vec![port(30306), port(0)];
        assert_eq!(ports_column(&s), "3306:30306/TCP,3306/TCP");
        s.r#type = "LoadBalancer".into();
        assert_eq!(external_ip_column(&s), "<pending>");
        let svc = Service {
            spec: Some(s),
            ..Default::default()
        };
        assert_eq!(
            cells(&svc, SystemTime::now()),
            [
                "",
                "LoadBalancer",
                "None",
                "<pending>",
                "3306:30306/TCP,3306/TCP",
                "<unknown>",
                "app=mysql"
            ]
        );
    }
}
