// Included by build.rs (the serde attributes of the generated messages) and by the crate
// (`schema`, the OpenAPI documents), so both name fields from this one table.

/// Proto field names whose Kubernetes JSON name is not plain camelCase.
pub const RENAMES: &[(&str, &str)] = &[
    ("pod_ip", "podIP"),
    ("pod_ips", "podIPs"),
    ("host_ip", "hostIP"),
    ("pod_cidr", "podCIDR"),
    ("pod_cidrs", "podCIDRs"),
    ("cluster_ip", "clusterIP"),
    ("cluster_ips", "clusterIPs"),
    ("image_id", "imageID"),
    ("container_id", "containerID"),
    ("provider_id", "providerID"),
    ("machine_id", "machineID"),
    ("boot_id", "bootID"),
    ("system_uuid", "systemUUID"),
];

/// Fields holding quantity maps ({"cpu": "100m"}): numbers are accepted and every value is validated.
pub const QUANTITY_MAPS: &[&str] = &[
    ".twinset.v1.ResourceRequirements.limits",
    ".twinset.v1.ResourceRequirements.requests",
    ".twinset.v1.NodeStatus.capacity",
    ".twinset.v1.NodeStatus.allocatable",
    ".twinset.v1.PersistentVolumeClaimStatus.capacity",
];
