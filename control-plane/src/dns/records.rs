//! The cluster's DNS records as a pure function of its Services and Pods, and the
//! lookup rules that turn a query name into an answer.
//!
//! Names (with the default domain `cluster.local`):
//! - `<hostname>.<service>.<namespace>.svc.cluster.local` → the pod's IPs, for a pod the
//!   Service selects whose `spec.subdomain` is the Service's name and whose
//!   `spec.hostname` is set (a StatefulSet pod: hostname = pod name, subdomain = serviceName);
//! - `<service>.<namespace>.svc.cluster.local` → the IPs of every published pod the Service
//!   selects (its `spec.selector`; with an empty selector, the pods whose subdomain is the
//!   Service's name). Twinset has no cluster IPs, so every Service is answered as headless.
//!
//! A pod is published while it has an IP and is Running, Ready (condition Ready True) and
//! not terminating; with the Service's `publishNotReadyAddresses` (as in Kubernetes),
//! while it has an IP and has not ended (Failed/Succeeded). A Service with no published
//! pod still exists as a name (NOERROR, no data); a pod name that is not published does not
//! (NXDOMAIN). Other names under the domain (including Kubernetes' `<ip>.<ns>.pod…` form)
//! are NXDOMAIN; names outside the domain are REFUSED: this server is no recursive
//! resolver, and REFUSED makes a stub resolver (glibc, musl) try its next nameserver.

use crate::podutil;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use twinset_proto::v1::{Pod, Service};

/// The time to live of every answer, and of negative answers (the SOA minimum): short, so
/// that a pod that becomes Ready, moves or goes is seen within seconds.
pub const TTL: u32 = 5;

/// A cluster domain that is not a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cluster domain {0:?}: must be a DNS-1123 subdomain such as cluster.local")]
pub struct InvalidDomain(pub String);

/// The records of one Service: its own name and the names of its pods.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceRecords {
    /// Every published pod's IPs, sorted, without duplicates (may be empty).
    pub addresses: Vec<IpAddr>,
    /// Pod hostname (lowercase) → that pod's IPs (only published pods appear).
    pub hosts: BTreeMap<String, Vec<IpAddr>>,
}

/// The records of one namespace: Service name (lowercase) → its records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceRecords {
    /// Service name (lowercase) → its records.
    pub services: BTreeMap<String, ServiceRecords>,
}

impl NamespaceRecords {
    /// The records of one namespace from its Services and Pods (the caller passes only
    /// objects of that namespace; objects of another namespace are ignored).
    pub fn build<'a>(
        namespace: &str,
        services: impl IntoIterator<Item = &'a Service>,
        pods: impl IntoIterator<Item = &'a Pod>,
    ) -> NamespaceRecords {
        let pods: Vec<&Pod> = pods
            .into_iter()
            .filter(|p| meta_namespace(p.metadata.as_ref()) == namespace)
            .collect();
        let mut out = NamespaceRecords::default();
        for svc in services {
            let Some(meta) = svc.metadata.as_ref() else {
                continue;
            };
            if meta.namespace != namespace || meta.name.is_empty() {
                continue;
            }
            out.services
                .insert(meta.name.to_ascii_lowercase(), service_records(svc, &pods));
        }
        out
    }

    /// No Service: the namespace contributes no name.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

fn meta_namespace(meta: Option<&twinset_proto::v1::ObjectMeta>) -> &str {
    meta.map(|m| m.namespace.as_str()).unwrap_or("")
}

fn service_records(svc: &Service, pods: &[&Pod]) -> ServiceRecords {
    let name = svc.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("");
    let spec = svc.spec.clone().unwrap_or_default();
    let mut addresses = BTreeSet::new();
    let mut hosts: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
    for pod in pods {
        if !selects(name, &spec.selector, pod) || !published(pod, spec.publish_not_ready_addresses)
        {
            continue;
        }
        let ips = pod_ips(pod);
        addresses.extend(ips.iter().copied());
        let pod_spec = pod.spec.as_ref();
        let subdomain = pod_spec.map(|s| s.subdomain.as_str()).unwrap_or("");
        let hostname = pod_spec.map(|s| s.hostname.as_str()).unwrap_or("");
        if subdomain == name && twinset_proto::validate::is_dns1123_label(hostname) {
            hosts
                .entry(hostname.to_ascii_lowercase())
                .or_default()
                .extend(ips);
        }
    }
    ServiceRecords {
        addresses: addresses.into_iter().collect(),
        hosts: hosts
            .into_iter()
            .filter(|(_, ips)| !ips.is_empty())
            .map(|(h, ips)| (h, ips.into_iter().collect()))
            .collect(),
    }
}

/// The Service selects the pod: by its selector, or (empty selector) by the pod's subdomain.
fn selects(service: &str, selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    if selector.is_empty() {
        return pod.spec.as_ref().is_some_and(|s| s.subdomain == service);
    }
    let empty = BTreeMap::new();
    let labels = pod.metadata.as_ref().map(|m| &m.labels).unwrap_or(&empty);
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The pod's addresses may be published (see the module doc).
fn published(pod: &Pod, publish_not_ready: bool) -> bool {
    let phase = podutil::phase(pod);
    if phase == "Failed" || phase == "Succeeded" {
        return false;
    }
    publish_not_ready
        || (phase == "Running" && podutil::is_ready(pod) && !podutil::is_terminating(pod))
}

/// The pod's IPs (status.podIPs, else status.podIP), parsed, without duplicates; text that
/// is not an IP address is skipped.
fn pod_ips(pod: &Pod) -> BTreeSet<IpAddr> {
    let Some(status) = pod.status.as_ref() else {
        return BTreeSet::new();
    };
    status
        .pod_ips
        .iter()
        .map(|p| p.ip.as_str())
        .chain(std::iter::once(status.pod_ip.as_str()))
        .filter_map(|ip| ip.trim().parse().ok())
        .collect()
}

/// What a name resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The name is outside the cluster domain: not ours to answer.
    Refused,
    /// The name is under the cluster domain and does not exist.
    NxDomain,
    /// The name exists (an A/AAAA answer may still be empty: a Service with no published
    /// pod, or a name such as `svc.cluster.local` that only has names below it).
    Exists {
        /// The name's addresses (IPv4 and IPv6), sorted.
        addresses: Vec<IpAddr>,
        /// The name is the cluster domain itself (where the SOA record lives).
        apex: bool,
    },
}

/// Every record of the cluster domain, kept per namespace so that a change in one
/// namespace rebuilds only that namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    /// The domain's labels, lowercase ("cluster", "local").
    domain: Vec<String>,
    /// Namespace → its records; namespaces without a Service are absent.
    namespaces: HashMap<String, NamespaceRecords>,
    /// Bumped on every change; the SOA serial.
    serial: u32,
}

impl Zone {
    /// An empty zone for `domain` ("cluster.local"; a trailing dot and any case are accepted).
    pub fn new(domain: &str) -> Result<Zone, InvalidDomain> {
        let normal = domain
            .strip_suffix('.')
            .unwrap_or(domain)
            .to_ascii_lowercase();
        if !twinset_proto::validate::is_dns1123_subdomain(&normal) {
            return Err(InvalidDomain(domain.to_string()));
        }
        Ok(Zone {
            domain: normal.split('.').map(str::to_string).collect(),
            namespaces: HashMap::new(),
            serial: 1,
        })
    }

    /// The zone for all of these Services and Pods (any namespaces).
    pub fn build(domain: &str, services: &[Service], pods: &[Pod]) -> Result<Zone, InvalidDomain> {
        let mut zone = Zone::new(domain)?;
        let mut by_ns: BTreeMap<&str, (Vec<&Service>, Vec<&Pod>)> = BTreeMap::new();
        for svc in services {
            by_ns
                .entry(meta_namespace(svc.metadata.as_ref()))
                .or_default()
                .0
                .push(svc);
        }
        for pod in pods {
            by_ns
                .entry(meta_namespace(pod.metadata.as_ref()))
                .or_default()
                .1
                .push(pod);
        }
        for (ns, (svcs, pods)) in by_ns {
            zone.set_namespace(ns, NamespaceRecords::build(ns, svcs, pods));
        }
        Ok(zone)
    }

    /// The cluster domain, lowercase, without a trailing dot.
    pub fn domain(&self) -> String {
        self.domain.join(".")
    }

    /// The SOA serial: changes whenever a record changes.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Replaces one namespace's records; returns whether anything changed.
    pub fn set_namespace(&mut self, namespace: &str, records: NamespaceRecords) -> bool {
        let changed = if records.is_empty() {
            self.namespaces.remove(namespace).is_some()
        } else if self.namespaces.get(namespace) == Some(&records) {
            false
        } else {
            self.namespaces.insert(namespace.to_string(), records);
            true
        };
        if changed {
            self.serial = self.serial.wrapping_add(1).max(1);
        }
        changed
    }

    /// The namespaces that have a Service.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces.keys().map(String::as_str)
    }

    /// The records of one namespace, if it has any Service.
    pub fn namespace(&self, namespace: &str) -> Option<&NamespaceRecords> {
        self.namespaces.get(namespace)
    }

    /// Resolves a dotted name (any case, trailing dot optional).
    pub fn lookup(&self, name: &str) -> Answer {
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() {
            return self.lookup_labels::<&str>(&[]);
        }
        let labels: Vec<&str> = name.split('.').collect();
        self.lookup_labels(&labels)
    }

    /// Resolves a name given as labels, most specific first (any case; a label that is
    /// not plain text simply matches nothing).
    pub fn lookup_labels<S: AsRef<str>>(&self, labels: &[S]) -> Answer {
        let n = self.domain.len();
        if labels.len() < n {
            return Answer::Refused;
        }
        let (inner, suffix) = labels.split_at(labels.len() - n);
        if !suffix
            .iter()
            .zip(&self.domain)
            .all(|(l, d)| l.as_ref().eq_ignore_ascii_case(d))
        {
            return Answer::Refused;
        }
        let exists = |addresses: Vec<IpAddr>, apex| Answer::Exists { addresses, apex };
        let lower: Vec<String> = inner
            .iter()
            .map(|l| l.as_ref().to_ascii_lowercase())
            .collect();
        match lower
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            [] => exists(Vec::new(), true),
            ["svc"] if !self.namespaces.is_empty() => exists(Vec::new(), false),
            [ns, "svc"] if self.namespaces.contains_key(*ns) => exists(Vec::new(), false),
            [svc, ns, "svc"] => match self.namespaces.get(*ns).and_then(|r| r.services.get(*svc)) {
                Some(s) => exists(s.addresses.clone(), false),
                None => Answer::NxDomain,
            },
            [host, svc, ns, "svc"] => match self
                .namespaces
                .get(*ns)
                .and_then(|r| r.services.get(*svc))
                .and_then(|s| s.hosts.get(*host))
            {
                Some(ips) => exists(ips.clone(), false),
                None => Answer::NxDomain,
            },
            _ => Answer::NxDomain,
        }
    }
}

#[cfg(test)]
mod tests;
