//! Pod status computation (pure): phase from the container statuses as the kubelet
//! computes it, the four pod conditions with stable transition times, IPs and start
//! time, and the QoS class.

use twinset_proto::v1;

/// Everything the pod status is computed from.
#[derive(Clone, Debug, Default)]
pub struct StatusInput<'a> {
    /// spec.restartPolicy (empty means Always).
    pub restart_policy: &'a str,
    /// The containers, in spec order.
    pub containers: Vec<v1::ContainerStatus>,
    /// The conditions reported before (their transition times are kept).
    pub previous_conditions: &'a [v1::PodCondition],
    /// The node's address.
    pub host_ip: &'a str,
    /// The pod's address.
    pub pod_ip: &'a str,
    /// When the agent accepted the pod.
    pub start_time: &'a str,
    /// Now, RFC 3339.
    pub now: &'a str,
    /// QoS class of the spec.
    pub qos_class: &'a str,
}

/// The pod phase, following the kubelet: any container waiting to start → Pending;
/// any running → Running; all stopped → Succeeded/Failed unless they will restart.
pub fn phase(restart_policy: &str, containers: &[v1::ContainerStatus]) -> &'static str {
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in containers {
        let st = c.state.clone().unwrap_or_default();
        if st.running.is_some() {
            running += 1;
        } else if let Some(t) = &st.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if c
            .last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .is_some()
        {
            // Waiting to restart after a run.
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if containers.is_empty() || waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        return match restart_policy {
            "Never" if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            "OnFailure" if stopped == succeeded => "Succeeded",
            _ => "Running",
        };
    }
    "Pending"
}

fn condition(
    prev: &[v1::PodCondition],
    kind: &str,
    ok: bool,
    reason: &str,
    message: String,
    now: &str,
) -> v1::PodCondition {
    let status = if ok { "True" } else { "False" };
    let since = prev
        .iter()
        .find(|c| c.r#type == kind && c.status == status && !c.last_transition_time.is_empty())
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    v1::PodCondition {
        r#type: kind.to_string(),
        status: status.to_string(),
        last_probe_time: String::new(),
        last_transition_time: since,
        reason: if ok {
            String::new()
        } else {
            reason.to_string()
        },
        message: if ok { String::new() } else { message },
    }
}

/// PodScheduled, Initialized, ContainersReady and Ready, from the containers'
/// `ready` (the pod worker sets it from the readiness probe; without one a container
/// is ready while it runs).
pub fn conditions(
    prev: &[v1::PodCondition],
    phase: &str,
    containers: &[v1::ContainerStatus],
    now: &str,
) -> Vec<v1::PodCondition> {
    let unready: Vec<&str> = containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let all_ready = unready.is_empty() && !containers.is_empty();
    let completed = phase == "Succeeded" || phase == "Failed";
    let (reason, message) = if completed {
        ("PodCompleted", String::new())
    } else {
        (
            "ContainersNotReady",
            format!("containers with unready status: [{}]", unready.join(" ")),
        )
    };
    vec![
        condition(prev, "PodScheduled", true, "", String::new(), now),
        condition(prev, "Initialized", true, "", String::new(), now),
        condition(
            prev,
            "ContainersReady",
            all_ready,
            reason,
            message.clone(),
            now,
        ),
        condition(prev, "Ready", all_ready, reason, message, now),
    ]
}

/// The QoS class of a pod spec: Guaranteed when every container's cpu and memory
/// limits are set and equal the requests (when given), BestEffort with no requests or
/// limits at all, else Burstable.
pub fn qos_class(spec: &v1::PodSpec) -> &'static str {
    let mut any = false;
    let mut guaranteed = !spec.containers.is_empty();
    for c in &spec.containers {
        let r = c.resources.clone().unwrap_or_default();
        if !r.limits.is_empty() || !r.requests.is_empty() {
            any = true;
        }
        for res in ["cpu", "memory"] {
            match (r.limits.get(res), r.requests.get(res)) {
                (Some(l), Some(q)) if l == q => {}
                (Some(_), None) => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The full pod status.
pub fn build(input: &StatusInput<'_>) -> v1::PodStatus {
    let phase = phase(input.restart_policy, &input.containers);
    let conditions = conditions(
        input.previous_conditions,
        phase,
        &input.containers,
        input.now,
    );
    v1::PodStatus {
        phase: phase.to_string(),
        conditions,
        message: String::new(),
        reason: String::new(),
        host_ip: input.host_ip.to_string(),
        pod_ip: input.pod_ip.to_string(),
        pod_ips: if input.pod_ip.is_empty() {
            Vec::new()
        } else {
            vec![v1::PodIp {
                ip: input.pod_ip.to_string(),
            }]
        },
        start_time: input.start_time.to_string(),
        container_statuses: input.containers.clone(),
        init_container_statuses: Vec::new(),
        nominated_node_name: String::new(),
        qos_class: input.qos_class.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(reason: &str) -> v1::ContainerStatus {
        v1::ContainerStatus {
            name: "w".into(),
            state: Some(v1::ContainerState {
                waiting: Some(v1::ContainerStateWaiting {
                    reason: reason.into(),
                    message: String::new(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn running() -> v1::ContainerStatus {
        v1::ContainerStatus {
            name: "r".into(),
            ready: true,
            state: Some(v1::ContainerState {
                running: Some(v1::ContainerStateRunning {
                    started_at: "t".into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn terminated(code: i32) -> v1::ContainerStatus {
        v1::ContainerStatus {
            name: "t".into(),
            state: Some(v1::ContainerState {
                terminated: Some(v1::ContainerStateTerminated {
                    exit_code: code,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn backing_off() -> v1::ContainerStatus {
        let mut s = waiting("CrashLoopBackOff");
        s.last_state = terminated(1).state;
        s
    }

    #[test]
    fn phases() {
        assert_eq!(phase("Always", &[]), "Pending");
        assert_eq!(phase("Always", &[waiting("ContainerCreating")]), "Pending");
        assert_eq!(
            phase("Always", &[running(), waiting("ImageNotInTable")]),
            "Pending"
        );
        assert_eq!(phase("Always", &[running()]), "Running");
        assert_eq!(phase("Always", &[backing_off()]), "Running");
        assert_eq!(phase("Never", &[terminated(0)]), "Succeeded");
        assert_eq!(phase("Never", &[terminated(0), terminated(1)]), "Failed");
        assert_eq!(phase("OnFailure", &[terminated(0)]), "Succeeded");
        assert_eq!(phase("OnFailure", &[backing_off()]), "Running");
        assert_eq!(phase("Never", &[running(), terminated(1)]), "Running");
    }

    #[test]
    fn ready_conditions_keep_transition_times() {
        let c1 = conditions(&[], "Pending", &[waiting("ContainerCreating")], "t1");
        let ready = c1.iter().find(|c| c.r#type == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "ContainersNotReady")
        );
        assert_eq!(ready.message, "containers with unready status: [w]");
        let c2 = conditions(&c1, "Running", &[running()], "t2");
        let get =
            |cs: &[v1::PodCondition], t: &str| cs.iter().find(|c| c.r#type == t).cloned().unwrap();
        assert_eq!(get(&c2, "Ready").status, "True");
        assert_eq!(get(&c2, "Ready").last_transition_time, "t2");
        assert_eq!(get(&c2, "PodScheduled").last_transition_time, "t1");
        let c3 = conditions(&c2, "Running", &[running()], "t3");
        assert_eq!(get(&c3, "ContainersReady").last_transition_time, "t2");
        let c4 = conditions(&c3, "Succeeded", &[terminated(0)], "t4");
        assert_eq!(get(&c4, "Ready").reason, "PodCompleted");
    }

    #[test]
    fn qos() {
        let mut spec = v1::PodSpec {
            containers: vec![v1::Container::default()],
            ..Default::default()
        };
        assert_eq!(qos_class(&spec), "BestEffort");
        let mut r = v1::ResourceRequirements::default();
        r.limits.insert("memory".into(), "128Mi".into());
        spec.containers[0].resources = Some(r.clone());
        assert_eq!(qos_class(&spec), "Burstable");
        r.limits.insert("cpu".into(), "100m".into());
        spec.containers[0].resources = Some(r);
        assert_eq!(qos_class(&spec), "Guaranteed");
    }

    #[test]
    fn build_fills_ips() {
        let s = build(&StatusInput {
            restart_policy: "Always",
            containers: vec![running()],
            host_ip: "127.0.0.1",
            pod_ip: "127.128.0.2",
            start_time: "t0",
            now: "t1",
            qos_class: "BestEffort",
            ..Default::default()
        });
        assert_eq!(s.phase, "Running");
        assert_eq!(
            s.pod_ips,
            vec![v1::PodIp {
                ip: "127.128.0.2".into()
            }]
        );
        assert_eq!(s.host_ip, "127.0.0.1");
        assert_eq!(s.conditions.len(), 4);
    }
}
