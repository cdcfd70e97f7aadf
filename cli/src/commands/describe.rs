//! `twinset describe KIND [NAME...]`: kubectl's describe layouts, with the
//! controller's pods counted and the object's events.
use super::{get_object, list, namespace, parse_target, Ctx};
use crate::args::DescribeArgs;
use crate::client::Client;
use crate::print::describe::{self, PodCounts};
use crate::print::format;
use crate::report::{self, AlreadyReported};
use anyhow::bail;
use twinset_proto::kinds::Kind;
use twinset_proto::v1::{Event, LabelSelector, Object, Pod};

/// Runs `describe`.
pub async fn run(ctx: &Ctx, args: DescribeArgs) -> anyhow::Result<()> {
    let (kind, names) = parse_target(&args.kind, &args.names)?;
    if !matches!(
        kind,
        Kind::DaemonSet
            | Kind::StatefulSet
            | Kind::Pod
            | Kind::Node
            | Kind::PersistentVolumeClaim
            | Kind::Service
    ) {
        bail!(
            "describe is not supported for {} yet (supported: daemonsets, statefulsets, pods, nodes, persistentvolumeclaims, services); use `twinset get {} -o yaml`",
            kind.resource(),
            kind.resource()
        );
    }
    let ns = namespace(args.namespace.as_deref());
    let mut client = ctx.client().await?;
    let mut failed = false;
    let mut objects = Vec::new();
    if names.is_empty() {
        let (items, _) = list(
            &mut client,
            kind,
            &ns,
            args.selector.as_deref().unwrap_or(""),
            "",
        )
        .await?;
        if items.is_empty() {
            eprintln!("{}", super::get::no_resources(kind, &ns));
            return Ok(());
        }
        objects = items;
    } else {
        for name in &names {
            match get_object(&mut client, kind, &ns, name).await {
                Ok(o) => objects.push(o),
                Err(e) => {
                    report::eprint_error(&e);
                    failed = true;
                }
            }
        }
    }
    let mut first = true;
    for obj in objects {
        let text = describe_one(&mut client, &obj).await?;
        if !first {
            report::out("\n\n");
        }
        first = false;
        report::out(&text);
    }
    if failed {
        return Err(AlreadyReported.into());
    }
    Ok(())
}

async fn describe_one(client: &mut Client, obj: &Object) -> anyhow::Result<String> {
    let events = events_for(client, obj).await?;
    Ok(match obj.kind() {
        Kind::DaemonSet => {
            let ds = obj.as_daemon_set().cloned().unwrap_or_default();
            let selector = ds.spec.as_ref().and_then(|s| s.selector.clone());
            let pods = controlled_pods(client, obj, selector.as_ref()).await?;
            describe::daemon_set(&ds, &PodCounts::of(&pods), &events)
        }
        Kind::StatefulSet => {
            let sts = obj.as_stateful_set().cloned().unwrap_or_default();
            let selector = sts.spec.as_ref().and_then(|s| s.selector.clone());
            let pods = controlled_pods(client, obj, selector.as_ref()).await?;
            describe::stateful_set(&sts, &PodCounts::of(&pods), &events)
        }
        Kind::PersistentVolumeClaim => {
            let pvc = obj
                .as_persistent_volume_claim()
                .cloned()
                .unwrap_or_default();
            let (pods, _) = list(client, Kind::Pod, obj.namespace(), "", "").await?;
            let pods: Vec<Pod> = pods.into_iter().filter_map(|o| o.into_pod()).collect();
            describe::persistent_volume_claim(&pvc, &pods, &events)
        }
        Kind::Service => {
            let svc = obj.as_service().cloned().unwrap_or_default();
            let selector = svc
                .spec
                .as_ref()
                .map(|s| s.selector.clone())
                .unwrap_or_default();
            let pods = if selector.is_empty() {
                Vec::new()
            } else {
                let (pods, _) = list(
                    client,
                    Kind::Pod,
                    obj.namespace(),
                    &format::labels(&selector),
                    "",
                )
                .await?;
                pods.into_iter().filter_map(|o| o.into_pod()).collect()
            };
            describe::service(&svc, &pods, &events)
        }
        Kind::Pod => describe::pod(&obj.as_pod().cloned().unwrap_or_default(), &events),
        Kind::Node => {
            let node = obj.as_node().cloned().unwrap_or_default();
            let (pods, _) = list(
                client,
                Kind::Pod,
                "",
                "",
                &format!("spec.nodeName={}", obj.name()),
            )
            .await?;
            let pods: Vec<Pod> = pods.into_iter().filter_map(|o| o.into_pod()).collect();
            describe::node(&node, &pods, &events)
        }
        other => bail!("describe is not supported for {} yet", other.resource()),
    })
}

/// The events about one object, asked of the server by field selector as kubectl's
/// describe does: only that object's events travel, not the namespace's.
async fn events_for(client: &mut Client, obj: &Object) -> anyhow::Result<Vec<Event>> {
    let (events, _) = list(
        client,
        Kind::Event,
        obj.namespace(),
        "",
        &event_selector(obj),
    )
    .await?;
    Ok(events.into_iter().filter_map(|o| o.into_event()).collect())
}

/// kubectl's event field selector for an object: its name, namespace ("" for a
/// cluster-scoped object, whose events are then searched in every namespace), kind and,
/// when it has one, uid (so an earlier object of the same name does not lend its events).
fn event_selector(obj: &Object) -> String {
    let m = obj.meta();
    let mut terms = vec![
        format!("involvedObject.name={}", m.name),
        format!("involvedObject.namespace={}", m.namespace),
        format!("involvedObject.kind={}", obj.kind().as_str()),
    ];
    if !m.uid.is_empty() {
        terms.push(format!("involvedObject.uid={}", m.uid));
    }
    terms.join(",")
}

/// The pods a controller owns, as kubectl's getPodStatusForController counts them: those
/// its selector matches in its namespace whose controller reference is the object.
async fn controlled_pods(
    client: &mut Client,
    owner: &Object,
    selector: Option<&LabelSelector>,
) -> anyhow::Result<Vec<Pod>> {
    let sel = format::label_selector(selector);
    if sel == format::NONE {
        // An empty selector selects nothing for a controller.
        return Ok(Vec::new());
    }
    let (pods, _) = list(client, Kind::Pod, owner.namespace(), &sel, "").await?;
    let uid = owner.meta().uid.clone();
    Ok(pods
        .into_iter()
        .filter_map(|o| o.into_pod())
        .filter(|p| controlled_by(p, &uid))
        .collect())
}

/// Whether `pod`'s controller reference names the object with `uid` (an object without
/// a uid, which the API never returns, owns every selected pod).
fn controlled_by(pod: &Pod, uid: &str) -> bool {
    if uid.is_empty() {
        return true;
    }
    pod.metadata
        .as_ref()
        .is_some_and(|m| m.is_controlled_by(uid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::{ObjectMeta, OwnerReference};

    #[test]
    fn events_are_selected_by_involved_object() {
        let pod = Object::from(Pod {
            metadata: Some(ObjectMeta {
                name: "web-0".into(),
                namespace: "shop".into(),
                uid: "u1".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            event_selector(&pod),
            "involvedObject.name=web-0,involvedObject.namespace=shop,involvedObject.kind=Pod,involvedObject.uid=u1"
        );
        let node = Object::from(twinset_proto::v1::Node {
            metadata: Some(ObjectMeta {
                name: "node1".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            event_selector(&node),
            "involvedObject.name=node1,involvedObject.namespace=,involvedObject.kind=Node"
        );
        // The server accepts every term for events.
        twinset_proto::fields::FieldSelector::parse(Kind::Event, &event_selector(&pod)).unwrap();
    }

    #[test]
    fn only_controlled_pods_count() {
        let pod = |uid: &str, controller| Pod {
            metadata: Some(ObjectMeta {
                owner_references: vec![OwnerReference {
                    kind: "StatefulSet".into(),
                    uid: uid.into(),
                    controller: Some(controller),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(controlled_by(&pod("u1", true), "u1"));
        assert!(!controlled_by(&pod("u2", true), "u1"));
        assert!(!controlled_by(&pod("u1", false), "u1"));
        assert!(!controlled_by(&Pod::default(), "u1"));
        assert!(controlled_by(&Pod::default(), ""));
    }
}
