//! What a DaemonSet's status says about nodes its rollout cannot reach: the controller
//! writes the condition, `rollout status` and `describe` read it. A node that is not
//! Ready (NotReady, or Unknown because its agent went silent) does not hold the rollout
//! of the healthy nodes back; its pod is updated when it returns, and until then it
//! waits, named in this condition.

use crate::v1::{DaemonSetCondition, DaemonSetStatus};

/// The condition type: True while unreachable nodes wait for the rollout.
pub const NODES_WAITING: &str = "NodesWaiting";
/// Its reason while reachable nodes are still being updated.
pub const NODES_UNREACHABLE: &str = "NodesUnreachable";
/// Its reason once every reachable node runs an updated, available pod: the rollout is
/// as done as it can be until the waiting nodes return.
pub const REACHABLE_NODES_UPDATED: &str = "ReachableNodesUpdated";
/// At most this many node names are written into the message.
pub const MAX_NAMED: usize = 10;

/// The condition's message for the waiting `nodes` (sorted, non-empty).
pub fn waiting_message(nodes: &[String]) -> String {
    let n = nodes.len();
    let (noun, verb) = if n == 1 {
        ("node", "waits")
    } else {
        ("nodes", "wait")
    };
    let mut names = nodes
        .iter()
        .take(MAX_NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if n > MAX_NAMED {
        names.push_str(&format!(", and {} more", n - MAX_NAMED));
    }
    format!("{n} unreachable {noun} {verb} for the update: {names}")
}

/// The condition for the waiting `nodes` (`reachable_done`: every reachable node is
/// updated and available), keeping `previous`'s transition time when it was already
/// True.
pub fn waiting_condition(
    nodes: &[String],
    reachable_done: bool,
    previous: Option<&DaemonSetCondition>,
    now: &str,
) -> DaemonSetCondition {
    let since = previous
        .filter(|c| c.status == "True")
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    DaemonSetCondition {
        r#type: NODES_WAITING.into(),
        status: "True".into(),
        last_transition_time: since,
        reason: if reachable_done {
            REACHABLE_NODES_UPDATED
        } else {
            NODES_UNREACHABLE
        }
        .into(),
        message: waiting_message(nodes),
    }
}

/// What a status says about waiting nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// How many nodes wait.
    pub count: usize,
    /// The names the message lists (at most [`MAX_NAMED`]).
    pub names: Vec<String>,
    /// Every reachable node is updated and available.
    pub reachable_done: bool,
    /// The condition's message.
    pub message: String,
}

/// The waiting nodes a status names, if any.
pub fn waiting_nodes(status: &DaemonSetStatus) -> Option<Waiting> {
    let c = status
        .conditions
        .iter()
        .find(|c| c.r#type == NODES_WAITING && c.status == "True")?;
    let (count, rest) = c.message.split_once(' ')?;
    let count: usize = count.parse().ok()?;
    let (_, names) = rest.split_once(": ")?;
    let names = names
        .split(", ")
        .filter(|n| !n.starts_with("and "))
        .map(str::to_string)
        .collect();
    Some(Waiting {
        count,
        names,
        reachable_done: c.reason == REACHABLE_NODES_UPDATED,
        message: c.message.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("node{i}")).collect()
    }

    #[test]
    fn messages_read_back() {
        for (n, done) in [
            (1, true),
            (2, false),
            (MAX_NAMED, true),
            (MAX_NAMED + 3, false),
        ] {
            let c = waiting_condition(&names(n), done, None, "2026-12-02T00:00:00Z");
            let st = DaemonSetStatus {
                conditions: vec![c],
                ..Default::default()
            };
            let w = waiting_nodes(&st).expect("a waiting condition");
            assert_eq!(w.count, n);
            assert_eq!(w.names, names(n.min(MAX_NAMED)));
            assert_eq!(w.reachable_done, done);
        }
        assert_eq!(
            waiting_message(&names(1)),
            "1 unreachable node waits for the update: node1"
        );
        assert_eq!(
            waiting_message(&names(12)),
            "12 unreachable nodes wait for the update: node1, node2, node3, node4, node5, node6, \
             node7, node8, node9, node10, and 2 more"
        );
        assert_eq!(waiting_nodes(&DaemonSetStatus::default()), None);
    }

    #[test]
    fn transition_time_is_kept_while_true() {
        let first = waiting_condition(&names(1), false, None, "t1");
        let again = waiting_condition(&names(2), true, Some(&first), "t2");
        assert_eq!(again.last_transition_time, "t1");
        let mut off = first.clone();
        off.status = "False".into();
        assert_eq!(
            waiting_condition(&names(1), false, Some(&off), "t3").last_transition_time,
            "t3"
        );
    }
}
