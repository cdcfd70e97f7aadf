//! A pod's network identity inside its sandbox, as the kubelet gives it: the
//! hostname (`spec.hostname` or the pod name), the FQDN when `spec.subdomain` is set
//! (`<hostname>.<subdomain>.<namespace>.svc.cluster.local`), and the contents of the
//! pod's own `/etc/hosts` and `/etc/resolv.conf` (the latter only when the agent knows
//! the cluster DNS address).

use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use twinset_proto::v1::{Pod, PodSpec};

/// The cluster's DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// The longest hostname the kernel (and Kubernetes) accepts.
pub const MAX_HOSTNAME: usize = 63;

/// The pod's hostname: `spec.hostname`, else the pod name, cut to 63 bytes without a
/// trailing `-` or `.` (as the kubelet does).
pub fn hostname(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    let name = match spec.map(|s| s.hostname.as_str()) {
        Some(h) if !h.is_empty() => h,
        _ => pod.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or(""),
    };
    let mut end = name.len().min(MAX_HOSTNAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].trim_end_matches(['-', '.']).to_string()
}

/// `<hostname>.<subdomain>.<namespace>.svc.cluster.local` when the pod has a subdomain.
pub fn fqdn(pod: &Pod, hostname: &str) -> Option<String> {
    let sub = pod
        .spec
        .as_ref()
        .map(|s| s.subdomain.as_str())
        .unwrap_or("");
    if sub.is_empty() {
        return None;
    }
    let ns = pod
        .metadata
        .as_ref()
        .map(|m| m.namespace.as_str())
        .unwrap_or("default");
    Some(format!("{hostname}.{sub}.{ns}.svc.{CLUSTER_DOMAIN}"))
}

/// The pod's `/etc/hosts`: the localhost lines, then the pod IP with its FQDN (if any)
/// and hostname.
pub fn hosts_file(pod_ip: &str, hostname: &str, fqdn: Option<&str>) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file (Twinset).\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    if !pod_ip.is_empty() {
        s.push_str(pod_ip);
        if let Some(f) = fqdn {
            s.push('\t');
            s.push_str(f);
        }
        s.push('\t');
        s.push_str(hostname);
        s.push('\n');
    }
    s
}

/// The pod's `/etc/resolv.conf`, pointing at the cluster DNS server.
pub fn resolv_conf(dns: IpAddr, namespace: &str) -> String {
    format!(
        "search {namespace}.svc.{d} svc.{d} {d}\nnameserver {dns}\noptions ndots:5\n",
        d = CLUSTER_DOMAIN
    )
}

/// Whether the pod resolves names through the cluster DNS (`dnsPolicy` ClusterFirst,
/// the default, without hostNetwork; or ClusterFirstWithHostNet). `Default` uses the
/// node's resolver; `None` (dnsConfig) is not supported and also keeps the node's.
pub fn uses_cluster_dns(spec: &PodSpec) -> bool {
    match spec.dns_policy.as_str() {
        "" | "ClusterFirst" => !spec.host_network,
        "ClusterFirstWithHostNet" => true,
        _ => false,
    }
}

/// The pod's identity files, written under its folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFiles {
    /// Bind-mounted on `/etc/hosts`.
    pub hosts: Option<PathBuf>,
    /// Bind-mounted on `/etc/resolv.conf`.
    pub resolv_conf: Option<PathBuf>,
}

/// Writes `content` to `path` unless a complete copy is there already (the files of a
/// pod never change while it lives: its IP, hostname and DNS are fixed), so a pod's
/// later containers and restarts cost one `openat` each, and no temporary file.
fn write_once(path: &Path, content: &str) -> std::io::Result<()> {
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if std::fs::metadata(path)?.len() == content.len() as u64 {
                return Ok(());
            }
            // Torn by a crash mid-write: write it again.
            std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(path)?
        }
        Err(e) => return Err(e),
    };
    f.write_all(content.as_bytes())
}

/// Writes `<pod dir>/hosts` (unless hostNetwork: the pod then keeps the node's) and
/// `<pod dir>/resolv.conf` (when `cluster_dns` is set and the pod's DNS policy uses
/// it), off the async worker ([`crate::blocking`]). Only isolated pods need them (they are bind-mounted over `/etc/hosts` and
/// `/etc/resolv.conf` in the pod's mount namespace), so only they call this.
pub fn write_pod_files(
    pod_dir: &Path,
    pod: &Pod,
    pod_ip: &str,
    cluster_dns: Option<IpAddr>,
) -> std::io::Result<PodFiles> {
    crate::blocking::file_work(|| write_pod_files_now(pod_dir, pod, pod_ip, cluster_dns))
}

fn write_pod_files_now(
    pod_dir: &Path,
    pod: &Pod,
    pod_ip: &str,
    cluster_dns: Option<IpAddr>,
) -> std::io::Result<PodFiles> {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut files = PodFiles {
        hosts: None,
        resolv_conf: None,
    };
    if !spec.host_network {
        let h = hostname(pod);
        let path = pod_dir.join("hosts");
        write_once(&path, &hosts_file(pod_ip, &h, fqdn(pod, &h).as_deref()))?;
        files.hosts = Some(path);
    }
    if let Some(dns) = cluster_dns.filter(|_| uses_cluster_dns(&spec)) {
        let ns = pod
            .metadata
            .as_ref()
            .map(|m| m.namespace.as_str())
            .unwrap_or("default");
        let path = pod_dir.join("resolv.conf");
        write_once(&path, &resolv_conf(dns, ns))?;
        files.resolv_conf = Some(path);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::ObjectMeta;

    fn pod(name: &str, hostname: &str, subdomain: &str) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "database".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                hostname: hostname.into(),
                subdomain: subdomain.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn hostname_is_the_spec_hostname_or_the_pod_name_cut_to_63() {
        assert_eq!(hostname(&pod("mysql-db-0", "", "")), "mysql-db-0");
        assert_eq!(hostname(&pod("p", "custom", "")), "custom");
        let long = format!("{}-x", "a".repeat(62));
        assert_eq!(hostname(&pod(&long, "", "")), "a".repeat(62));
    }

    #[test]
    fn fqdn_needs_a_subdomain() {
        let p = pod("mysql-db-1", "mysql-db-1", "mysql");
        assert_eq!(
            fqdn(&p, &hostname(&p)).as_deref(),
            Some("mysql-db-1.mysql.database.svc.cluster.local")
        );
        assert_eq!(fqdn(&pod("x", "", ""), "x"), None);
    }

    #[test]
    fn hosts_file_lists_localhost_and_the_pod() {
        let h = hosts_file(
            "127.128.0.5",
            "mysql-db-1",
            Some("mysql-db-1.mysql.database.svc.cluster.local"),
        );
        assert!(h.contains("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("::1\tlocalhost ip6-localhost ip6-loopback\n"));
        assert!(
            h.ends_with("127.128.0.5\tmysql-db-1.mysql.database.svc.cluster.local\tmysql-db-1\n")
        );
        assert!(hosts_file("127.128.0.6", "web", None).ends_with("127.128.0.6\tweb\n"));
    }

    #[test]
    fn resolv_conf_searches_the_namespace_first() {
        assert_eq!(
            resolv_conf("127.0.0.53".parse().unwrap(), "database"),
            "search database.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver 127.0.0.53\n\
             options ndots:5\n"
        );
    }

    #[test]
    fn dns_policy_decides_resolv_conf() {
        let mut spec = PodSpec::default();
        assert!(uses_cluster_dns(&spec));
        spec.host_network = true;
        assert!(!uses_cluster_dns(&spec));
        spec.dns_policy = "ClusterFirstWithHostNet".into();
        assert!(uses_cluster_dns(&spec));
        spec.host_network = false;
        spec.dns_policy = "Default".into();
        assert!(!uses_cluster_dns(&spec));
    }

    #[test]
    fn pod_files_are_written_under_the_pod_dir() {
        let t = tempfile::tempdir().unwrap();
        let p = pod("web-0", "", "web");
        let f = write_pod_files(t.path(), &p, "127.1.2.3", None).unwrap();
        assert_eq!(f.resolv_conf, None, "no cluster DNS configured");
        let hosts = std::fs::read_to_string(f.hosts.unwrap()).unwrap();
        assert!(hosts.ends_with("127.1.2.3\tweb-0.web.database.svc.cluster.local\tweb-0\n"));
        let f = write_pod_files(
            t.path(),
            &p,
            "127.1.2.3",
            Some("10.0.0.10".parse().unwrap()),
        )
        .unwrap();
        let resolv = std::fs::read_to_string(f.resolv_conf.unwrap()).unwrap();
        assert!(resolv.contains("nameserver 10.0.0.10\n"));
        let mut host_net = p.clone();
        host_net.spec.as_mut().unwrap().host_network = true;
        let f = write_pod_files(
            t.path(),
            &host_net,
            "127.0.0.1",
            Some("10.0.0.10".parse().unwrap()),
        )
        .unwrap();
        assert_eq!(
            f,
            PodFiles {
                hosts: None,
                resolv_conf: None
            }
        );
    }
}
