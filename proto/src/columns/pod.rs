//! The pod columns and what kubectl computes for their READY, STATUS and RESTARTS
//! cells (printers.go printPod).
use super::format::{self, NONE};
use super::{Column, AGE, NAME};
use crate::v1::{ContainerState, Pod, PodSpec, PodStatus};
use std::time::SystemTime;

/// Pod columns: NAME, READY, STATUS, RESTARTS, AGE | wide: IP, NODE, NOMINATED NODE, READINESS GATES.
pub const COLUMNS: &[Column] = &[
    NAME,
    Column::string(
        "Ready",
        "How many of the pod's containers are ready, of how many.",
    ),
    Column::string("Status", "The aggregate status of the pod's containers."),
    Column::string(
        "Restarts",
        "How often the pod's containers have restarted, and when the last one did.",
    ),
    AGE,
    Column::string("IP", "The pod's IP address, once allocated.").wide(),
    Column::string("Node", "The node the pod is bound to.").wide(),
    Column::string(
        "Nominated Node",
        "The node a preempting pod is nominated to.",
    )
    .wide(),
    Column::string(
        "Readiness Gates",
        "The pod's readiness gates that are met, of how many.",
    )
    .wide(),
];

/// The cells of one pod, matching [`COLUMNS`].
pub fn cells(pod: &Pod, now: SystemTime) -> Vec<String> {
    let meta = pod.metadata.as_ref();
    let spec = pod.spec.as_ref();
    let st = pod.status.as_ref();
    let summary = summary(pod);
    let restarts = summary.restarts_column(now);
    vec![
        meta.map(|m| m.name.clone()).unwrap_or_default(),
        summary.ready,
        summary.status,
        restarts,
        format::age_at(meta.map_or("", |m| &m.creation_timestamp), now),
        format::or_none(st.map_or("", |s| &s.pod_ip)),
        format::or_none(spec.map_or("", |s| &s.node_name)),
        format::or_none(st.map_or("", |s| &s.nominated_node_name)),
        NONE.to_string(),
    ]
}

/// The derived columns of one pod row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSummary {
    /// `ready/total` containers.
    pub ready: String,
    /// The STATUS column: a container reason, `Terminating`, or the phase.
    pub status: String,
    /// Total restarts of the pod's containers.
    pub restarts: i64,
    /// When the last restarted container last finished (RFC 3339), if known.
    pub last_restart: Option<String>,
}

impl PodSummary {
    /// The RESTARTS column as seen at `now`: `2 (5m ago)` when the last restart time is known.
    pub fn restarts_column(&self, now: SystemTime) -> String {
        match &self.last_restart {
            Some(t) if self.restarts != 0 => {
                format!("{} ({} ago)", self.restarts, format::age_at(t, now))
            }
            _ => self.restarts.to_string(),
        }
    }
}

/// Computes READY, STATUS and RESTARTS exactly as kubectl's printPod does.
pub fn summary(pod: &Pod) -> PodSummary {
    let (empty_spec, empty_status) = (PodSpec::default(), PodStatus::default());
    let empty_state = ContainerState::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty_spec);
    let status = pod.status.as_ref().unwrap_or(&empty_status);
    let deleting = pod
        .metadata
        .as_ref()
        .is_some_and(|m| !m.deletion_timestamp.is_empty());
    let total = spec.containers.len();
    let mut ready = 0usize;
    let mut restarts: i64 = 0;
    let mut last_restart: Option<String> = None;

    let mut reason = if status.reason.is_empty() {
        status.phase.clone()
    } else {
        status.reason.clone()
    };

    let mut initializing = false;
    for (i, c) in status.init_container_statuses.iter().enumerate() {
        restarts += i64::from(c.restart_count);
        note_restart(&mut last_restart, c.last_state.as_ref());
        let state = c.state.as_ref().unwrap_or(&empty_state);
        match (&state.terminated, &state.waiting) {
            (Some(t), _) if t.exit_code == 0 => continue,
            (Some(t), _) => {
                reason = if !t.reason.is_empty() {
                    format!("Init:{}", t.reason)
                } else if t.signal != 0 {
                    format!("Init:Signal:{}", t.signal)
                } else {
                    format!("Init:ExitCode:{}", t.exit_code)
                };
            }
            (None, Some(w)) if !w.reason.is_empty() && w.reason != "PodInitializing" => {
                reason = format!("Init:{}", w.reason);
            }
            _ => reason = format!("Init:{}/{}", i, spec.init_containers.len()),
        }
        initializing = true;
        break;
    }

    let initialized = status
        .conditions
        .iter()
        .any(|c| c.r#type == "Initialized" && c.status == "True");
    if !initializing || initialized {
        // kubectl starts over from its restartable init containers (sidecars, which
        // these pods do not have): the init containers' restarts and last restart drop.
        restarts = 0;
        last_restart = None;
        let mut has_running = false;
        for c in status.container_statuses.iter().rev() {
            restarts += i64::from(c.restart_count);
            note_restart(&mut last_restart, c.last_state.as_ref());
            let state = c.state.as_ref().unwrap_or(&empty_state);
            if let Some(w) = state.waiting.as_ref().filter(|w| !w.reason.is_empty()) {
                reason = w.reason.clone();
            } else if let Some(t) = &state.terminated {
                reason = if !t.reason.is_empty() {
                    t.reason.clone()
                } else if t.signal != 0 {
                    format!("Signal:{}", t.signal)
                } else {
                    format!("ExitCode:{}", t.exit_code)
                };
            } else if c.ready && state.running.is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = status
                .conditions
                .iter()
                .any(|c| c.r#type == "Ready" && c.status == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.to_string();
        }
    }

    if deleting {
        if status.reason == "NodeLost" {
            reason = "Unknown".to_string();
        } else if status.phase != "Succeeded" && status.phase != "Failed" {
            reason = "Terminating".to_string();
        }
    }
    if reason.is_empty() {
        reason = "Pending".to_string();
    }

    PodSummary {
        ready: format!("{ready}/{total}"),
        status: reason,
        restarts,
        last_restart,
    }
}

/// Keeps in `last` the later of it and the finish of a last state `state`.
fn note_restart(last: &mut Option<String>, state: Option<&ContainerState>) {
    if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
        if !t.finished_at.is_empty() && last.as_deref().is_none_or(|cur| later(&t.finished_at, cur))
        {
            *last = Some(t.finished_at.clone());
        }
    }
}

fn later(a: &str, b: &str) -> bool {
    match (crate::time::parse(a), crate::time::parse(b)) {
        (Some(a), Some(b)) => a > b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{
        Container, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        ContainerStatus, ObjectMeta, PodCondition,
    };
    use std::time::Duration;

    fn pod(phase: &str, statuses: Vec<ContainerStatus>) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: "p".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: phase.into(),
                container_statuses: statuses,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn running(ready: bool, restarts: i32) -> ContainerStatus {
        ContainerStatus {
            name: "c".into(),
            ready,
            restart_count: restarts,
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: "2024-01-01T00:00:00Z".into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn running_ready_pod() {
        let s = summary(&pod("Running", vec![running(true, 0)]));
        assert_eq!(s.ready, "1/1");
        assert_eq!(s.status, "Running");
        assert_eq!(s.restarts_column(SystemTime::now()), "0");
    }

    #[test]
    fn waiting_reason_wins_over_phase() {
        let st = ContainerStatus {
            name: "c".into(),
            restart_count: 3,
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: "CrashLoopBackOff".into(),
                    message: String::new(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = summary(&pod("Running", vec![st]));
        assert_eq!(s.status, "CrashLoopBackOff");
        assert_eq!(s.ready, "0/1");
        assert_eq!(s.restarts, 3);
        assert_eq!(s.restarts_column(SystemTime::now()), "3");
    }

    #[test]
    fn restarts_column_says_when_the_last_restart_was() {
        let mut st = running(true, 2);
        st.last_state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 1,
                finished_at: "2024-03-05T07:08:09Z".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let s = summary(&pod("Running", vec![st]));
        assert_eq!(s.last_restart.as_deref(), Some("2024-03-05T07:08:09Z"));
        let now = crate::time::parse("2024-03-05T07:13:09Z").unwrap();
        assert_eq!(s.restarts_column(now), "2 (5m ago)");
    }

    #[test]
    fn restarts_column_sums_containers_and_takes_the_latest_finish_as_kubectl() {
        let restarted = |restarts, finished: &str| {
            let mut st = running(true, restarts);
            st.last_state = Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 1,
                    finished_at: finished.into(),
                    ..Default::default()
                }),
                ..Default::default()
            });
            st
        };
        let now = crate::time::parse("2024-03-05T08:00:00Z").unwrap();
        let s = summary(&pod(
            "Running",
            vec![
                restarted(4, "2024-03-05T07:59:30Z"),
                restarted(1, "2024-03-05T07:50:00Z"),
                running(true, 0),
            ],
        ));
        assert_eq!(s.restarts_column(now), "5 (30s ago)");
        // Restarts without a last state say only how many.
        assert_eq!(
            summary(&pod("Running", vec![running(true, 2)])).restarts_column(now),
            "2"
        );

        // Once initialized, only the app containers count, with their own last finish
        // (an init container's later one is dropped with its restarts).
        let mut p = pod("Running", vec![restarted(1, "2024-03-05T07:00:00Z")]);
        if let Some(st) = p.status.as_mut() {
            let mut init = restarted(3, "2024-03-05T07:59:59Z");
            init.state = Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 0,
                    ..Default::default()
                }),
                ..Default::default()
            });
            st.init_container_statuses = vec![init];
            st.conditions = vec![PodCondition {
                r#type: "Initialized".into(),
                status: "True".into(),
                ..Default::default()
            }];
        }
        if let Some(spec) = p.spec.as_mut() {
            spec.init_containers = vec![Container::default()];
        }
        assert_eq!(summary(&p).restarts_column(now), "1 (60m ago)");
    }

    #[test]
    fn terminated_without_reason_shows_exit_code_or_signal() {
        let term = |code, signal| ContainerStatus {
            name: "c".into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    signal,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            summary(&pod("Failed", vec![term(2, 0)])).status,
            "ExitCode:2"
        );
        assert_eq!(
            summary(&pod("Failed", vec![term(137, 9)])).status,
            "Signal:9"
        );
        let mut oom = term(137, 9);
        if let Some(t) = oom.state.as_mut().and_then(|s| s.terminated.as_mut()) {
            t.reason = "OOMKilled".into();
        }
        assert_eq!(summary(&pod("Running", vec![oom])).status, "OOMKilled");
    }

    #[test]
    fn deletion_timestamp_means_terminating() {
        let mut p = pod("Running", vec![running(true, 0)]);
        if let Some(m) = p.metadata.as_mut() {
            m.deletion_timestamp = "2024-01-01T00:00:00Z".into();
        }
        assert_eq!(summary(&p).status, "Terminating");
        if let Some(s) = p.status.as_mut() {
            s.reason = "NodeLost".into();
        }
        assert_eq!(summary(&p).status, "Unknown");
    }

    #[test]
    fn completed_with_running_sibling_is_running_or_not_ready() {
        let mut p = pod("Running", vec![]);
        if let Some(spec) = p.spec.as_mut() {
            spec.containers.push(Container {
                name: "d".into(),
                ..Default::default()
            });
        }
        let done = ContainerStatus {
            name: "d".into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    reason: "Completed".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        if let Some(s) = p.status.as_mut() {
            s.container_statuses = vec![running(true, 0), done];
        }
        assert_eq!(summary(&p).status, "NotReady");
        if let Some(s) = p.status.as_mut() {
            s.conditions.push(PodCondition {
                r#type: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            });
        }
        let s = summary(&p);
        assert_eq!(s.status, "Running");
        assert_eq!(s.ready, "1/2");
    }

    #[test]
    fn init_container_states() {
        let mut p = pod("Pending", vec![]);
        if let Some(spec) = p.spec.as_mut() {
            spec.init_containers = vec![Container::default(), Container::default()];
        }
        let waiting = ContainerStatus {
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: "PodInitializing".into(),
                    message: String::new(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        if let Some(s) = p.status.as_mut() {
            s.init_container_statuses = vec![waiting];
        }
        assert_eq!(summary(&p).status, "Init:0/2");
    }

    #[test]
    fn empty_pod_is_pending() {
        let s = summary(&Pod::default());
        assert_eq!(s.status, "Pending");
        assert_eq!(s.ready, "0/0");
    }

    #[test]
    fn cells_of_a_crash_looping_pod() {
        let mut st = running(false, 4);
        st.state = Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: "CrashLoopBackOff".into(),
                message: String::new(),
            }),
            ..Default::default()
        });
        let mut p = pod("Running", vec![st]);
        if let Some(m) = p.metadata.as_mut() {
            m.creation_timestamp = "2024-03-05T07:00:00Z".into();
        }
        if let Some(s) = p.status.as_mut() {
            s.pod_ip = "127.128.1.2".into();
        }
        let now = crate::time::parse("2024-03-05T07:00:00Z").unwrap() + Duration::from_secs(90);
        assert_eq!(
            cells(&p, now),
            [
                "p",
                "0/1",
                "CrashLoopBackOff",
                "4",
                "90s",
                "127.128.1.2",
                "<none>",
                "<none>",
                "<none>"
            ]
        );
    }
}
