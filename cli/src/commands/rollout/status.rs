//! `twinset rollout status ds/NAME | sts/NAME`: kubectl's rollout status
//! messages, following the object through the Watch stream until done.
use crate::args::RolloutStatusArgs;
use crate::commands::{get_object, namespace, parse_target, Ctx};
use crate::report;
use anyhow::bail;
use tokio::time::Instant;
use twinset_proto::kinds::Kind;
use twinset_proto::v1::{DaemonSet, Object, StatefulSet};

/// The state of a rollout: the message to print and whether it is finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutState {
    /// kubectl's line (without the newline).
    pub message: String,
    /// Whether the rollout is complete.
    pub done: bool,
}

fn waiting(message: String) -> anyhow::Result<RolloutState> {
    Ok(RolloutState {
        message,
        done: false,
    })
}

/// kubectl's DaemonSetStatusViewer.
pub fn daemon_set_status(ds: &DaemonSet) -> anyhow::Result<RolloutState> {
    let meta = ds.metadata.clone().unwrap_or_default();
    let spec = ds.spec.clone().unwrap_or_default();
    let st = ds.status.clone().unwrap_or_default();
    let ty = spec.update_strategy.map(|s| s.r#type).unwrap_or_default();
    if !ty.is_empty() && ty != "RollingUpdate" {
        bail!("rollout status is only available for RollingUpdate strategy type");
    }
    let name = &meta.name;
    if meta.generation <= st.observed_generation {
        // Twinset's addition: unreachable nodes do not hold the rollout; once every
        // reachable node is done, it ends and names them.
        if let Some(w) = twinset_proto::rollout::waiting_nodes(&st).filter(|w| w.reachable_done) {
            return Ok(RolloutState {
                message: format!(
                    "daemon set {name:?} successfully rolled out on every reachable node; {}",
                    w.message
                ),
                done: true,
            });
        }
        if st.updated_number_scheduled < st.desired_number_scheduled {
            return waiting(format!(
                "Waiting for daemon set {name:?} rollout to finish: {} out of {} new pods have been updated...",
                st.updated_number_scheduled, st.desired_number_scheduled
            ));
        }
        if st.number_available < st.desired_number_scheduled {
            return waiting(format!(
                "Waiting for daemon set {name:?} rollout to finish: {} of {} updated pods are available...",
                st.number_available, st.desired_number_scheduled
            ));
        }
        return Ok(RolloutState {
            message: format!("daemon set {name:?} successfully rolled out"),
            done: true,
        });
    }
    waiting("Waiting for daemon set spec update to be observed...".to_string())
}

/// kubectl's StatefulSetStatusViewer, line for line: the spec must be observed, then
/// every desired replica ready; a RollingUpdate with a `rollingUpdate` block (always,
/// once the server has filled in its defaults) is a partitioned roll out, otherwise the
/// revisions decide.
pub fn stateful_set_status(sts: &StatefulSet) -> anyhow::Result<RolloutState> {
    let meta = sts.metadata.clone().unwrap_or_default();
    let spec = sts.spec.clone().unwrap_or_default();
    let st = sts.status.clone().unwrap_or_default();
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    // An empty type is the API default, RollingUpdate.
    if !strategy.r#type.is_empty() && strategy.r#type != "RollingUpdate" {
        bail!("rollout status is only available for RollingUpdate strategy type");
    }
    if st.observed_generation == 0 || meta.generation > st.observed_generation {
        return waiting("Waiting for statefulset spec update to be observed...".to_string());
    }
    if let Some(replicas) = spec.replicas {
        if st.ready_replicas < replicas {
            return waiting(format!(
                "Waiting for {} pods to be ready...",
                replicas - st.ready_replicas
            ));
        }
    }
    if let Some(rolling) = strategy.rolling_update {
        if let (Some(replicas), Some(partition)) = (spec.replicas, rolling.partition) {
            if st.updated_replicas < replicas - partition {
                return waiting(format!(
                    "Waiting for partitioned roll out to finish: {} out of {} new pods have been updated...",
                    st.updated_replicas,
                    replicas - partition
                ));
            }
        }
        return Ok(RolloutState {
            message: format!(
                "partitioned roll out complete: {} new pods have been updated...",
                st.updated_replicas
            ),
            done: true,
        });
    }
    if st.update_revision != st.current_revision {
        return waiting(format!(
            "waiting for statefulset rolling update to complete {} pods at revision {}...",
            st.updated_replicas, st.update_revision
        ));
    }
    Ok(RolloutState {
        message: format!(
            "statefulset rolling update complete {} pods at revision {}...",
            st.current_replicas, st.current_revision
        ),
        done: true,
    })
}

fn state_of(obj: &Object) -> anyhow::Result<RolloutState> {
    match obj.kind() {
        Kind::DaemonSet => daemon_set_status(&obj.as_daemon_set().cloned().unwrap_or_default()),
        Kind::StatefulSet => {
            stateful_set_status(&obj.as_stateful_set().cloned().unwrap_or_default())
        }
        other => bail!(
            "no status viewer has been implemented for {}",
            other.as_str()
        ),
    }
}

/// Runs `rollout status`.
pub async fn run(ctx: &Ctx, args: RolloutStatusArgs) -> anyhow::Result<()> {
    let (first, rest) = match args.target.split_first() {
        Some((f, r)) => (f.clone(), r.to_vec()),
        None => bail!("required resource not specified"),
    };
    let (kind, names) = parse_target(&first, &rest)?;
    let [name] = names.as_slice() else {
        bail!("rollout status needs exactly one resource name");
    };
    if !matches!(kind, Kind::DaemonSet | Kind::StatefulSet) {
        bail!(
            "no status viewer has been implemented for {}",
            kind.as_str()
        );
    }
    let ns = namespace(args.namespace.as_deref());
    let mut client = ctx.client().await?;
    if !args.watch {
        let obj = get_object(&mut client, kind, &ns, name).await?;
        report::outln(&state_of(&obj)?.message);
        return Ok(());
    }
    let mut last = String::new();
    let mut seen = false;
    let follow = crate::watch::until(&mut client, kind, &ns, name, None, |obj| {
        let Some(obj) = obj else {
            if seen {
                bail!("object has been deleted");
            }
            return Err(crate::client::not_found(kind, name));
        };
        seen = true;
        let state = state_of(obj)?;
        if state.message != last {
            report::outln(&state.message);
            last = state.message.clone();
        }
        Ok(state.done)
    });
    // kubectl's `--timeout` (0: none) ends the wait with the wait package's error, which
    // unlike `delete --wait`'s names no object.
    match args.timeout.filter(|d| !d.is_zero()) {
        None => follow.await,
        Some(d) => match tokio::time::timeout_at(Instant::now() + d, follow).await {
            Ok(result) => result,
            Err(_) => bail!("timed out waiting for the condition"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::{
        DaemonSetStatus, ObjectMeta, RollingUpdateStatefulSetStrategy, StatefulSetSpec,
        StatefulSetStatus, StatefulSetUpdateStrategy,
    };

    #[test]
    fn daemon_set_messages() -> anyhow::Result<()> {
        let mut ds = DaemonSet {
            metadata: Some(ObjectMeta {
                name: "node-monitor".into(),
                generation: 2,
                ..Default::default()
            }),
            status: Some(DaemonSetStatus {
                observed_generation: 1,
                desired_number_scheduled: 3,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            daemon_set_status(&ds)?.message,
            "Waiting for daemon set spec update to be observed..."
        );
        if let Some(s) = ds.status.as_mut() {
            s.observed_generation = 2;
            s.updated_number_scheduled = 1;
        }
        assert_eq!(
            daemon_set_status(&ds)?.message,
            "Waiting for daemon set \"node-monitor\" rollout to finish: 1 out of 3 new pods have been updated..."
        );
        if let Some(s) = ds.status.as_mut() {
            s.updated_number_scheduled = 3;
            s.number_available = 2;
        }
        assert_eq!(
            daemon_set_status(&ds)?.message,
            "Waiting for daemon set \"node-monitor\" rollout to finish: 2 of 3 updated pods are available..."
        );
        if let Some(s) = ds.status.as_mut() {
            s.number_available = 3;
        }
        let done = daemon_set_status(&ds)?;
        assert!(done.done);
        assert_eq!(
            done.message,
            "daemon set \"node-monitor\" successfully rolled out"
        );
        Ok(())
    }

    #[test]
    fn daemon_set_with_unreachable_nodes_ends_naming_them() -> anyhow::Result<()> {
        let mut ds = DaemonSet {
            metadata: Some(ObjectMeta {
                name: "node-monitor".into(),
                generation: 2,
                ..Default::default()
            }),
            status: Some(DaemonSetStatus {
                observed_generation: 2,
                desired_number_scheduled: 4,
                updated_number_scheduled: 2,
                number_available: 3,
                conditions: vec![twinset_proto::rollout::waiting_condition(
                    &["node4".to_string()],
                    false,
                    None,
                    "t",
                )],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            daemon_set_status(&ds)?.message,
            "Waiting for daemon set \"node-monitor\" rollout to finish: 2 out of 4 new pods have been updated..."
        );
        if let Some(s) = ds.status.as_mut() {
            s.updated_number_scheduled = 3;
            s.conditions[0] =
                twinset_proto::rollout::waiting_condition(&["node4".to_string()], true, None, "t");
        }
        assert_eq!(
            daemon_set_status(&ds)?,
            RolloutState {
                message: "daemon set \"node-monitor\" successfully rolled out on every reachable node; 1 unreachable node waits for the update: node4".into(),
                done: true
            }
        );
        Ok(())
    }

    fn guide_set(partition: Option<i32>) -> StatefulSet {
        StatefulSet {
            metadata: Some(ObjectMeta {
                name: "mysql-db".into(),
                generation: 1,
                ..Default::default()
            }),
            spec: Some(StatefulSetSpec {
                replicas: Some(3),
                update_strategy: Some(StatefulSetUpdateStrategy {
                    r#type: "RollingUpdate".into(),
                    rolling_update: partition.map(|p| RollingUpdateStatefulSetStrategy {
                        partition: Some(p),
                        max_unavailable: None,
                    }),
                }),
                ..Default::default()
            }),
            status: Some(StatefulSetStatus {
                observed_generation: 1,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn status(sts: &mut StatefulSet) -> &mut StatefulSetStatus {
        sts.status.get_or_insert_with(Default::default)
    }

    #[test]
    fn stateful_set_waits_for_observed_generation_then_ready_pods() -> anyhow::Result<()> {
        let mut sts = guide_set(Some(0));
        status(&mut sts).observed_generation = 0;
        assert_eq!(
            stateful_set_status(&sts)?,
            RolloutState {
                message: "Waiting for statefulset spec update to be observed...".into(),
                done: false
            }
        );
        if let Some(m) = sts.metadata.as_mut() {
            m.generation = 2;
        }
        status(&mut sts).observed_generation = 1;
        assert_eq!(
            stateful_set_status(&sts)?.message,
            "Waiting for statefulset spec update to be observed..."
        );
        status(&mut sts).observed_generation = 2;
        assert_eq!(
            stateful_set_status(&sts)?.message,
            "Waiting for 3 pods to be ready..."
        );
        status(&mut sts).ready_replicas = 1;
        assert_eq!(
            stateful_set_status(&sts)?,
            RolloutState {
                message: "Waiting for 2 pods to be ready...".into(),
                done: false
            }
        );
        Ok(())
    }

    #[test]
    fn stateful_set_partitioned_roll_out() -> anyhow::Result<()> {
        let mut sts = guide_set(Some(0));
        status(&mut sts).ready_replicas = 3;
        status(&mut sts).updated_replicas = 1;
        assert_eq!(
            stateful_set_status(&sts)?,
            RolloutState {
                message:
                    "Waiting for partitioned roll out to finish: 1 out of 3 new pods have been updated..."
                        .into(),
                done: false
            }
        );
        status(&mut sts).updated_replicas = 3;
        assert_eq!(
            stateful_set_status(&sts)?,
            RolloutState {
                message: "partitioned roll out complete: 3 new pods have been updated...".into(),
                done: true
            }
        );
        let mut sts = guide_set(Some(2));
        status(&mut sts).ready_replicas = 3;
        assert_eq!(
            stateful_set_status(&sts)?.message,
            "Waiting for partitioned roll out to finish: 0 out of 1 new pods have been updated..."
        );
        status(&mut sts).updated_replicas = 1;
        assert_eq!(
            stateful_set_status(&sts)?,
            RolloutState {
                message: "partitioned roll out complete: 1 new pods have been updated...".into(),
                done: true
            }
        );
        Ok(())
    }

    #[test]
    fn stateful_set_without_rolling_update_block_follows_revisions() -> anyhow::Result<()> {
        let mut sts = guide_set(None);
        let st = status(&mut sts);
        st.ready_replicas = 3;
        st.updated_replicas = 1;
        st.current_replicas = 2;
        st.current_revision = "mysql-db-5d8f".into();
        st.update_revision = "mysql-db-7c9b".into();
        assert_eq!(
            stateful_set_status(&sts)?,
            RolloutState {
                message: "waiting for statefulset rolling update to complete 1 pods at revision mysql-db-7c9b..."
                    .into(),
                done: false
            }
        );
        let st = status(&mut sts);
        st.current_revision = "mysql-db-7c9b".into();
        st.current_replicas = 3;
        assert_eq!(
            stateful_set_status(&sts)?,
            RolloutState {
                message: "statefulset rolling update complete 3 pods at revision mysql-db-7c9b..."
                    .into(),
                done: true
            }
        );
        Ok(())
    }

    #[test]
    fn stateful_set_on_delete_has_no_status() {
        let mut sts = guide_set(None);
        if let Some(u) = sts.spec.as_mut().and_then(|s| s.update_strategy.as_mut()) {
            u.r#type = "OnDelete".into();
        }
        let err = stateful_set_status(&sts).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("rollout status is only available for RollingUpdate strategy type")
        );
    }
}
