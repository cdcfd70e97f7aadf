//! Node health: heartbeats are kept in memory ([`Heartbeats`]); a node silent for longer
//! than the grace period gets Ready=Unknown ("Kubelet stopped posting node status.")
//! and the unreachable taints. A heartbeat from it makes it Ready again (the Nodes
//! service calls [`mark_posting`] with [`heartbeat_ready`]), or Ready=False with reason
//! `AssignmentsNotSynced` when its agent says it cannot sync its pod assignments. Also
//! keeps the unschedulable taint in step with spec.unschedulable (cordon).

use super::node_loss;
use super::placement::{taint_keys, NO_EXECUTE, NO_SCHEDULE};
use crate::store::{update_with_retry, Change, Error as StoreError, Key, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use twinset_proto::v1::{Node, NodeCondition, Taint};
use twinset_proto::Kind;

/// When each node was last heard from. Nodes never heard from since the control plane
/// started count from its start, so a restart does not mark every node lost at once.
#[derive(Debug)]
pub struct Heartbeats {
    started: Instant,
    seen: Mutex<HashMap<String, Instant>>,
}

impl Default for Heartbeats {
    fn default() -> Self {
        Heartbeats {
            started: Instant::now(),
            seen: Mutex::default(),
        }
    }
}

impl Heartbeats {
    /// Records a heartbeat from `node` now.
    pub fn beat(&self, node: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.to_string(), Instant::now());
    }

    /// When `node` was last heard from.
    pub fn last_seen(&self, node: &str) -> Instant {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .copied()
            .unwrap_or(self.started)
    }

    /// Forgets a deleted node.
    pub fn forget(&self, node: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(node);
    }
}

/// The Ready condition's status ("" when absent).
pub fn ready_status(node: &Node) -> &str {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.r#type == "Ready"))
        .map(|c| c.status.as_str())
        .unwrap_or("")
}

fn set_condition(node: &mut Node, cond: NodeCondition) {
    let status = node.status.get_or_insert_with(Default::default);
    match status
        .conditions
        .iter_mut()
        .find(|c| c.r#type == cond.r#type)
    {
        Some(c) => {
            let transition = if c.status == cond.status {
                c.last_transition_time.clone()
            } else {
                cond.last_transition_time.clone()
            };
            *c = NodeCondition {
                last_transition_time: transition,
                ..cond
            };
        }
        None => status.conditions.push(cond),
    }
}

fn taints(node: &mut Node) -> &mut Vec<Taint> {
    &mut node.spec.get_or_insert_with(Default::default).taints
}

fn add_taint(node: &mut Node, key: &str, effect: &str, now: &str) {
    let t = taints(node);
    if !t.iter().any(|t| t.key == key && t.effect == effect) {
        t.push(Taint {
            key: key.into(),
            value: String::new(),
            effect: effect.into(),
            time_added: now.into(),
        });
    }
}

/// The reason of Ready=False while the agent cannot sync its pod assignments.
pub const NOT_SYNCED_REASON: &str = "AssignmentsNotSynced";

/// The Ready condition a posting agent stands for (status, reason, message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// `True` or `False`.
    pub status: &'static str,
    /// Kubernetes-style CamelCase reason.
    pub reason: &'static str,
    /// What `describe node` shows.
    pub message: String,
}

impl Readiness {
    /// The kubelet's Ready=True.
    pub fn ready() -> Readiness {
        Readiness {
            status: "True",
            reason: "KubeletReady",
            message: "kubelet is posting ready status".into(),
        }
    }

    /// True when `node`'s stored Ready condition already says this.
    pub fn is_stored_in(&self, node: &Node) -> bool {
        node.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.r#type == "Ready"))
            .is_some_and(|c| {
                c.status == self.status && c.reason == self.reason && c.message == self.message
            })
    }
}

/// What a heartbeat says of the node: Ready, or — when the agent reports that it cannot
/// sync its pod assignments (`assignments_not_synced`, its error, non-empty only once
/// that has lasted longer than the agent's grace) — NotReady saying why, since new pods
/// would stay Pending and deleted ones Terminating there.
pub fn heartbeat_ready(assignments_not_synced: &str) -> Readiness {
    let error = assignments_not_synced.trim();
    if error.is_empty() {
        return Readiness::ready();
    }
    // The agent's text is stored in the node: keep it to a bounded length.
    let error = match error.char_indices().nth(MAX_SYNC_ERROR_CHARS) {
        Some((cut, _)) => format!("{}…", &error[..cut]),
        None => error.to_string(),
    };
    Readiness {
        status: "False",
        reason: NOT_SYNCED_REASON,
        message: format!("node agent cannot sync its pod assignments: {error}"),
    }
}

/// The most characters of an agent's sync error kept in the node's Ready message.
pub const MAX_SYNC_ERROR_CHARS: usize = 1024;

/// Ready=True with the pressure conditions False, the unreachable taints removed and
/// every heartbeat time set to `now`.
pub fn mark_ready(node: &mut Node, now: &str) {
    mark_posting(node, now, &Readiness::ready());
}

/// What a posting agent's node shows: the pressure conditions False, Ready as `ready`
/// says (its transition time kept while its status stays), the unreachable taints
/// removed and every heartbeat time set to `now`.
pub fn mark_posting(node: &mut Node, now: &str, ready: &Readiness) {
    let cond = |t: &str, s: &str, reason: &str, message: &str| NodeCondition {
        r#type: t.into(),
        status: s.into(),
        last_heartbeat_time: now.into(),
        last_transition_time: now.into(),
        reason: reason.into(),
        message: message.into(),
    };
    set_condition(
        node,
        cond(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
    );
    set_condition(
        node,
        cond(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
    );
    set_condition(
        node,
        cond(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
    );
    set_condition(
        node,
        cond("Ready", ready.status, ready.reason, &ready.message),
    );
    taints(node).retain(|t| t.key != taint_keys::UNREACHABLE && t.key != taint_keys::NOT_READY);
}

/// Every condition Unknown ("Kubelet stopped posting node status.") and the unreachable
/// taints added (NoSchedule and NoExecute).
pub fn mark_unknown(node: &mut Node, now: &str) {
    let conds: Vec<NodeCondition> = node
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let types: Vec<String> = if conds.is_empty() {
        vec!["Ready".into()]
    } else {
        conds.iter().map(|c| c.r#type.clone()).collect()
    };
    for t in types {
        let heartbeat = conds
            .iter()
            .find(|c| c.r#type == t)
            .map(|c| c.last_heartbeat_time.clone())
            .unwrap_or_default();
        set_condition(
            node,
            NodeCondition {
                r#type: t,
                status: "Unknown".into(),
                last_heartbeat_time: heartbeat,
                last_transition_time: now.into(),
                reason: "NodeStatusUnknown".into(),
                message: "Kubelet stopped posting node status.".into(),
            },
        );
    }
    add_taint(node, taint_keys::UNREACHABLE, NO_SCHEDULE, now);
    add_taint(node, taint_keys::UNREACHABLE, NO_EXECUTE, now);
}

/// Keeps the unschedulable:NoSchedule taint in step with spec.unschedulable (cordon).
pub fn sync_unschedulable_taint(node: &mut Node) {
    let cordoned = node.spec.as_ref().is_some_and(|s| s.unschedulable);
    if cordoned {
        add_taint(
            node,
            taint_keys::UNSCHEDULABLE,
            NO_SCHEDULE,
            &twinset_proto::time::now(),
        );
    } else {
        taints(node).retain(|t| t.key != taint_keys::UNSCHEDULABLE);
    }
}

/// Watches heartbeats until `token` is cancelled, checking every 50 ms (less for short
/// timings): a node silent for longer than the grace goes Unknown, and its pods are
/// tended by [`node_loss::tend`] (not Ready; fenced `Replace` replicas replaced after
/// `timing.replace_after`).
pub async fn run(
    store: Arc<dyn Store>,
    heartbeats: Arc<Heartbeats>,
    timing: node_loss::Timing,
    token: CancellationToken,
) {
    let grace = timing.grace;
    // Fine enough that a replacement comes within a few tens of milliseconds of its
    // deadline; a look copies only silent nodes and their pods, so it is cheap.
    let period = (grace.min(timing.replace_after) / 20)
        .clamp(Duration::from_millis(20), Duration::from_millis(50));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Only the silent nodes are copied out of the store.
        let silent = store.list_where(Kind::Node, None, &|o| {
            heartbeats.last_seen(o.name()).elapsed() > grace
        });
        for obj in silent {
            let Some(node) = obj.as_node() else { continue };
            let name = obj.name();
            let node = if ready_status(node) == "Unknown" {
                node.clone()
            } else {
                match mark_node_unknown(&*store, &heartbeats, &obj, grace).await {
                    Some(n) => n,
                    None => continue,
                }
            };
            // Level-triggered: every tick while the node stays silent, so pods written
            // Ready meanwhile (or a control plane restarted meanwhile) are caught up.
            node_loss::tend(&*store, &node, heartbeats.last_seen(name).elapsed(), timing).await;
        }
    }
}

/// Marks a silent node Unknown (unless a heartbeat came in meanwhile); the node as
/// stored afterwards, None when it is not Unknown.
async fn mark_node_unknown(
    store: &dyn Store,
    heartbeats: &Heartbeats,
    obj: &twinset_proto::v1::Object,
    grace: Duration,
) -> Option<Node> {
    let name = obj.name();
    let marked = update_with_retry(store, &Key::of(obj), |o| {
        // A heartbeat may have come in meanwhile.
        let Some(n) = o.as_node_mut() else {
            return Ok(Change::Keep);
        };
        if heartbeats.last_seen(name).elapsed() <= grace || ready_status(n) == "Unknown" {
            return Ok(Change::Keep);
        }
        mark_unknown(n, &twinset_proto::time::now());
        Ok(Change::Write)
    })
    .await;
    match marked {
        Ok(outcome) => {
            if outcome.written() {
                tracing::warn!(
                    node = name,
                    ?grace,
                    "node stopped posting status: Ready=Unknown, tainted unreachable"
                );
            }
            let node = outcome.into_object().into_node()?;
            (ready_status(&node) == "Unknown").then_some(node)
        }
        // Gone, or still changing: look again next tick.
        Err(StoreError::NotFound { .. }) | Err(StoreError::Conflict { .. }) => None,
        Err(e) => {
            tracing::warn!(node = name, error = %e, "cannot mark node unknown");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use twinset_proto::v1::{Object, ObjectMeta};

    fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
        node.spec
            .as_ref()
            .is_some_and(|s| s.taints.iter().any(|t| t.key == key && t.effect == effect))
    }

    #[test]
    fn ready_unknown_ready_round_trip() {
        let mut n = Node::default();
        mark_ready(&mut n, "t1");
        assert_eq!(ready_status(&n), "True");
        mark_unknown(&mut n, "t2");
        assert_eq!(ready_status(&n), "Unknown");
        let ready = n
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.r#type == "Ready")
            .unwrap();
        assert_eq!(ready.message, "Kubelet stopped posting node status.");
        assert_eq!(ready.last_heartbeat_time, "t1");
        assert!(
            has_taint(&n, taint_keys::UNREACHABLE, NO_EXECUTE)
                && has_taint(&n, taint_keys::UNREACHABLE, NO_SCHEDULE)
        );
        mark_unknown(&mut n, "t3");
        assert_eq!(
            n.spec.as_ref().unwrap().taints.len(),
            2,
            "taints are not duplicated"
        );
        mark_ready(&mut n, "t4");
        assert_eq!(ready_status(&n), "True");
        assert!(n.spec.as_ref().unwrap().taints.is_empty());
    }

    #[test]
    fn a_node_that_cannot_sync_is_not_ready_saying_why() {
        assert_eq!(heartbeat_ready(""), Readiness::ready());
        assert_eq!(heartbeat_ready("  "), Readiness::ready());
        let long = heartbeat_ready(&"é".repeat(5000)).message;
        assert_eq!(
            long.chars().count(),
            "node agent cannot sync its pod assignments: ".len() + MAX_SYNC_ERROR_CHARS + 1
        );
        assert!(long.ends_with("é…"));
        let not_synced = heartbeat_ready("message too large");
        assert_eq!(
            not_synced,
            Readiness {
                status: "False",
                reason: NOT_SYNCED_REASON,
                message: "node agent cannot sync its pod assignments: message too large".into(),
            }
        );

        let mut n = Node::default();
        mark_ready(&mut n, "t1");
        assert!(Readiness::ready().is_stored_in(&n));
        assert!(!not_synced.is_stored_in(&n));
        mark_posting(&mut n, "t2", &not_synced);
        assert_eq!(ready_status(&n), "False");
        assert!(not_synced.is_stored_in(&n));
        let ready = |n: &Node| {
            n.status
                .as_ref()
                .unwrap()
                .conditions
                .iter()
                .find(|c| c.r#type == "Ready")
                .cloned()
                .unwrap()
        };
        assert_eq!(ready(&n).last_transition_time, "t2");
        // Still not synced: the heartbeat time moves, the transition does not.
        mark_posting(&mut n, "t3", &not_synced);
        assert_eq!(
            (
                ready(&n).last_heartbeat_time.as_str(),
                ready(&n).last_transition_time.as_str()
            ),
            ("t3", "t2")
        );
        // A different error is a new message, not a new transition.
        let other = heartbeat_ready("connection refused");
        assert!(!other.is_stored_in(&n));
        mark_posting(&mut n, "t4", &other);
        assert_eq!(ready(&n).last_transition_time, "t2");
        assert_eq!(
            ready(&n).message,
            "node agent cannot sync its pod assignments: connection refused"
        );
        // The pressure conditions stay False throughout; synced again is Ready again.
        assert!(n
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .all(|c| c.r#type == "Ready" || c.status == "False"));
        mark_posting(&mut n, "t5", &heartbeat_ready(""));
        assert_eq!(ready_status(&n), "True");
        assert_eq!(ready(&n).reason, "KubeletReady");
        assert_eq!(ready(&n).last_transition_time, "t5");
    }

    #[test]
    fn cordon_taint_follows_unschedulable() {
        let mut n = Node::default();
        n.spec.get_or_insert_with(Default::default).unschedulable = true;
        sync_unschedulable_taint(&mut n);
        assert!(has_taint(&n, taint_keys::UNSCHEDULABLE, NO_SCHEDULE));
        n.spec.as_mut().unwrap().unschedulable = false;
        sync_unschedulable_taint(&mut n);
        assert!(!has_taint(&n, taint_keys::UNSCHEDULABLE, NO_SCHEDULE));
    }

    #[tokio::test(start_paused = true)]
    async fn silent_nodes_become_unknown() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(100));
        let mut node = Node {
            metadata: Some(ObjectMeta {
                name: "n1".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        mark_ready(&mut node, "t0");
        store.create(Object::from(node)).await.unwrap();
        let beats = Arc::new(Heartbeats::default());
        beats.beat("n1");
        let token = CancellationToken::new();
        let task = tokio::spawn(run(
            store.clone(),
            beats.clone(),
            node_loss::Timing {
                grace: Duration::from_secs(5),
                replace_after: Duration::from_secs(6),
            },
            token.clone(),
        ));
        let status = || {
            store
                .get(Kind::Node, "", "n1")
                .and_then(Object::into_node)
                .map(|n| ready_status(&n).to_string())
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(status().as_deref(), Some("True"));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(status().as_deref(), Some("Unknown"));
        token.cancel();
        task.await.unwrap();
    }
}
