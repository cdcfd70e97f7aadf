//! The Node object the agent registers: name, labels, taints, capacity read from
//! `/proc`, addresses, the daemon endpoint port and system info.

use std::collections::BTreeMap;

use twinset_proto::v1;

use crate::runtime::procfs::machine;

/// Maximum pods per node (the Kubernetes default).
pub const MAX_PODS: u32 = 110;

pub use twinset_proto::kinds::kube_arch;

/// What goes into the registration besides machine facts.
#[derive(Clone, Debug)]
pub struct NodeInput<'a> {
    /// The node's name.
    pub name: &'a str,
    /// Labels from the configuration.
    pub labels: &'a BTreeMap<String, String>,
    /// Taints from the configuration.
    pub taints: &'a [v1::Taint],
    /// `--pod-cidr`, when given.
    pub pod_cidr: Option<&'a str>,
    /// The node's address (InternalIP).
    pub address: &'a str,
    /// Port of the agent's NodeAgent service.
    pub port: u16,
    /// How soon after its last acknowledged heartbeat the node has stopped every fenced
    /// pod (None: it does not promise to).
    pub fence_within: Option<std::time::Duration>,
}

/// Builds the Node to register.
pub fn build(input: &NodeInput<'_>) -> v1::Node {
    let mut labels = input.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), input.name.to_string());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert("kubernetes.io/arch".into(), kube_arch().into());
    let mut capacity = BTreeMap::new();
    capacity.insert("cpu".to_string(), machine::cpus().to_string());
    if let Some(kib) = machine::memory_kib() {
        capacity.insert("memory".to_string(), format!("{kib}Ki"));
    }
    capacity.insert("pods".to_string(), MAX_PODS.to_string());
    let cidr = input.pod_cidr.unwrap_or_default().to_string();
    v1::Node {
        api_version: "v1".into(),
        kind: "Node".into(),
        metadata: Some(v1::ObjectMeta {
            name: input.name.to_string(),
            labels,
            annotations: input
                .fence_within
                .map(|d| {
                    (
                        twinset_proto::fencing::FENCE_WITHIN_ANNOTATION.to_string(),
                        d.as_millis().to_string(),
                    )
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }),
        spec: Some(v1::NodeSpec {
            pod_cidrs: if cidr.is_empty() {
                Vec::new()
            } else {
                vec![cidr.clone()]
            },
            pod_cidr: cidr,
            unschedulable: false,
            taints: input.taints.to_vec(),
            provider_id: String::new(),
        }),
        status: Some(v1::NodeStatus {
            allocatable: capacity.clone(),
            capacity,
            phase: String::new(),
            conditions: Vec::new(),
            addresses: vec![
                v1::NodeAddress {
                    r#type: "InternalIP".into(),
                    address: input.address.to_string(),
                },
                v1::NodeAddress {
                    r#type: "Hostname".into(),
                    address: input.name.to_string(),
                },
            ],
            daemon_endpoints: Some(v1::NodeDaemonEndpoints {
                kubelet_endpoint: Some(v1::DaemonEndpoint {
                    port: i32::from(input.port),
                }),
            }),
            node_info: Some(v1::NodeSystemInfo {
                machine_id: machine::read_trimmed("/etc/machine-id"),
                boot_id: machine::read_trimmed("/proc/sys/kernel/random/boot_id"),
                kernel_version: machine::read_trimmed("/proc/sys/kernel/osrelease"),
                os_image: machine::os_image(),
                container_runtime_version: "process://twinset".into(),
                kubelet_version: concat!("v", env!("CARGO_PKG_VERSION")).into(),
                operating_system: "linux".into(),
                architecture: kube_arch().into(),
                kube_proxy_version: String::new(),
                system_uuid: machine::read_trimmed("/sys/class/dmi/id/product_uuid"),
            }),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_has_required_labels_capacity_and_endpoint() {
        let mut labels = BTreeMap::new();
        labels.insert("disk".to_string(), "ssd".to_string());
        let taints = vec![v1::Taint {
            key: "k".into(),
            value: "v".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        }];
        let n = build(&NodeInput {
            name: "node1",
            labels: &labels,
            taints: &taints,
            pod_cidr: Some("10.0.0.0/24"),
            address: "127.0.0.1",
            port: 4242,
            fence_within: Some(std::time::Duration::from_millis(5000)),
        });
        let meta = n.metadata.unwrap();
        assert_eq!(meta.labels["kubernetes.io/hostname"], "node1");
        assert_eq!(meta.labels["kubernetes.io/os"], "linux");
        assert_eq!(meta.labels["disk"], "ssd");
        assert!(meta.labels.contains_key("kubernetes.io/arch"));
        let spec = n.spec.unwrap();
        assert_eq!(spec.pod_cidr, "10.0.0.0/24");
        assert_eq!(spec.taints, taints);
        let st = n.status.unwrap();
        assert!(st.capacity["memory"].ends_with("Ki"));
        assert!(st.capacity["cpu"].parse::<u32>().unwrap() >= 1);
        assert_eq!(st.capacity["pods"], "110");
        assert_eq!(
            st.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port,
            4242
        );
        assert_eq!(st.addresses[0].address, "127.0.0.1");
        assert_eq!(st.addresses[1].r#type, "Hostname");
    }
}
