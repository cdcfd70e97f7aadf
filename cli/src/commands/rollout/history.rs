//! `twinset rollout history ds/NAME|sts/NAME [--revision N]`: a set's ControllerRevisions
//! found as kubectl finds them (the namespace's revisions matching the set's selector,
//! kept when the set is their controller), and kubectl's table or one revision's
//! template.
use super::{for_each_name, require_set, selector, targets, Ctx};
use crate::args::RolloutHistoryArgs;
use crate::client::Client;
use crate::commands::{get_object, list};
use crate::print::describe::pod_template_unaligned;
use crate::print::format::qualified_name;
use crate::print::tabwriter::TabWriter;
use crate::report;
use anyhow::{anyhow, bail};
use twinset_proto::kinds::Kind;
use twinset_proto::selector::Selector;
use twinset_proto::v1::{ControllerRevision, Object};

/// The annotation `kubectl --record` and users set to say why a revision was made.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// Runs `rollout history`.
pub async fn run(ctx: &Ctx, args: RolloutHistoryArgs) -> anyhow::Result<()> {
    let (kind, names, ns) = targets(&args.sets)?;
    if args.revision < 0 {
        bail!("revision must be a positive integer: {}", args.revision);
    }
    require_set(kind, "history viewer")?;
    let mut client = ctx.client().await?;
    for_each_name(names, async |name| {
        let set = get_object(&mut client, kind, &ns, &name).await?;
        let revisions = revisions(&mut client, &set).await?;
        report::out(&history(&set, &revisions, args.revision)?);
        Ok(())
    })
    .await
}

/// The set's revisions, lowest number first.
pub async fn revisions(
    client: &mut Client,
    set: &Object,
) -> anyhow::Result<Vec<ControllerRevision>> {
    let kind = set.kind();
    let name = set.name();
    let selector = selector(set)
        .ok_or_else(|| anyhow!("{} {name} has no selector", kind.as_str()))
        .and_then(|ls| {
            Selector::from_label_selector(ls).map_err(|e| {
                anyhow!(
                    "failed to create selector for {} {name}: {e}",
                    kind.as_str()
                )
            })
        })?;
    let (items, _) = list(
        client,
        Kind::ControllerRevision,
        set.namespace(),
        &selector.to_string(),
        "",
    )
    .await
    .map_err(|e| {
        anyhow!(
            "unable to find history controlled by {} {name}: {e}",
            kind.as_str()
        )
    })?;
    Ok(controlled_by(
        &set.meta().uid,
        items
            .into_iter()
            .filter_map(Object::into_controller_revision),
    ))
}

/// The revisions whose controller owner reference is the object with `uid`, lowest
/// number first (kubectl's controlledHistory, sorted as its history viewers sort).
pub fn controlled_by(
    uid: &str,
    revisions: impl IntoIterator<Item = ControllerRevision>,
) -> Vec<ControllerRevision> {
    let mut out: Vec<ControllerRevision> = revisions
        .into_iter()
        .filter(|r| {
            r.metadata
                .as_ref()
                .and_then(|m| m.controller())
                .is_some_and(|c| !uid.is_empty() && c.uid == uid)
        })
        .collect();
    out.sort_by_key(|r| r.revision);
    out
}

/// What kubectl prints for `rollout history` of `set`: its name, then the table of
/// revisions with their change causes, or (for `revision` > 0) that revision's template.
pub fn history(
    set: &Object,
    revisions: &[ControllerRevision],
    revision: i64,
) -> anyhow::Result<String> {
    let body = if revisions.is_empty() {
        "No rollout history found.".to_string()
    } else if revision > 0 {
        let found = revisions
            .iter()
            .find(|r| r.revision == revision)
            .ok_or_else(|| anyhow!("unable to find the specified revision"))?;
        pod_template_unaligned(&found.data.clone().unwrap_or_default())
    } else {
        let mut w = TabWriter::describe();
        w.write("REVISION\tCHANGE-CAUSE\n");
        let mut last = None;
        for r in revisions {
            // kubectl keys its history by number: one line per number.
            if last == Some(r.revision) {
                continue;
            }
            last = Some(r.revision);
            let cause = r
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.get(CHANGE_CAUSE))
                .filter(|c| !c.is_empty())
                .map_or("<none>", String::as_str);
            w.write(&format!("{}\t{cause}\n", r.revision));
        }
        w.finish()
    };
    let with_revision = if revision > 0 {
        format!("with revision #{revision}")
    } else {
        String::new()
    };
    // kubectl's name printer: `kind.group/name OPERATION`, the operation being this text.
    Ok(format!("{} {with_revision}\n{body}\n", qualified_name(set)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use twinset_proto::v1::{
        Container, DaemonSet, EnvVar, ObjectMeta, OwnerReference, PodSpec, PodTemplateSpec,
    };

    fn template(version: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".into(),
                    image: "twinset/sleep:latest".into(),
                    env: vec![EnvVar {
                        name: "VERSION".into(),
                        value: version.into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    pub(crate) fn revision(owner: &str, number: i64, version: &str) -> ControllerRevision {
        ControllerRevision {
            metadata: Some(ObjectMeta {
                name: format!("web-{version}"),
                owner_references: vec![OwnerReference {
                    uid: owner.into(),
                    controller: Some(true),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            data: Some(template(version)),
            revision: number,
            ..Default::default()
        }
    }

    fn web() -> Object {
        DaemonSet {
            metadata: Some(ObjectMeta {
                name: "web".into(),
                uid: "u1".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .into()
    }

    #[test]
    fn only_revisions_the_set_controls_in_number_order() {
        let mut not_controller = revision("u1", 9, "x");
        if let Some(m) = not_controller.metadata.as_mut() {
            m.owner_references[0].controller = None;
        }
        let got = controlled_by(
            "u1",
            [
                revision("u1", 3, "c"),
                revision("u2", 2, "other"),
                not_controller,
                revision("u1", 1, "a"),
            ],
        );
        let numbers: Vec<i64> = got.iter().map(|r| r.revision).collect();
        assert_eq!(numbers, [1, 3]);
        assert!(controlled_by("", [revision("", 1, "a")]).is_empty());
    }

    #[test]
    fn the_table_is_kubectls() -> anyhow::Result<()> {
        let mut second = revision("u1", 12, "b");
        if let Some(m) = second.metadata.as_mut() {
            m.annotations
                .insert(CHANGE_CAUSE.into(), "kubectl apply --record".into());
        }
        let text = history(&web(), &[revision("u1", 1, "a"), second], 0)?;
        assert_eq!(
            text,
            "daemonset.apps/web \nREVISION  CHANGE-CAUSE\n1         <none>\n12        kubectl apply --record\n\n"
        );
        assert_eq!(
            history(&web(), &[], 0)?,
            "daemonset.apps/web \nNo rollout history found.\n"
        );
        Ok(())
    }

    #[test]
    fn one_revision_is_its_template_as_kubectl_prints_it() -> anyhow::Result<()> {
        let revs = [revision("u1", 1, "a"), revision("u1", 2, "b")];
        let text = history(&web(), &revs, 1)?;
        assert!(
            text.starts_with(
                "daemonset.apps/web with revision #1\nPod Template:\n  Labels:\tapp=web\n"
            ),
            "{text}"
        );
        assert!(text.contains("      VERSION:\ta\n"), "{text}");
        assert!(text.ends_with("\n\n"), "{text:?}");
        let err = history(&web(), &revs, 3).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("unable to find the specified revision")
        );
        Ok(())
    }
}
