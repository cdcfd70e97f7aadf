//! `twinset rollout status|history|undo|restart|pause|resume` for DaemonSets and
//! StatefulSets, with kubectl's output and errors. This module dispatches and holds what
//! the verbs share: their targets, a set's template and selector whatever its kind, and
//! kubectl's way of going on past a failed object.
mod history;
mod restart;
mod status;
mod undo;

use crate::args::{RolloutArgs, RolloutCommand, RolloutTargetArgs};
use crate::commands::{get_object, namespace, parse_target, Ctx};
use crate::report;
use anyhow::bail;
use twinset_proto::kinds::Kind;
use twinset_proto::v1::{object::Kind as Variant, LabelSelector, Object, PodTemplateSpec};

/// Runs `rollout`.
pub async fn run(ctx: &Ctx, args: RolloutArgs) -> anyhow::Result<()> {
    match args.command {
        RolloutCommand::Status(a) => status::run(ctx, a).await,
        RolloutCommand::History(a) => history::run(ctx, a).await,
        RolloutCommand::Undo(a) => undo::run(ctx, a).await,
        RolloutCommand::Restart(a) => restart::run(ctx, a).await,
        RolloutCommand::Pause(a) => refuse(ctx, a, "pausing").await,
        RolloutCommand::Resume(a) => refuse(ctx, a, "resuming").await,
    }
}

/// The kind, names and namespace a verb acts on.
fn targets(args: &RolloutTargetArgs) -> anyhow::Result<(Kind, Vec<String>, String)> {
    let Some((first, rest)) = args.target.split_first() else {
        bail!("required resource not specified");
    };
    let (kind, names) = parse_target(first, rest)?;
    if names.is_empty() {
        bail!("required resource not specified");
    }
    Ok((kind, names, namespace(args.namespace.as_deref())))
}

/// A kind as Go prints a GroupKind: `DaemonSet.apps`, `Pod`.
fn group_kind(kind: Kind) -> String {
    match kind.group() {
        "" => kind.as_str().to_string(),
        group => format!("{}.{group}", kind.as_str()),
    }
}

/// Whether the rollout verbs other than status serve this kind (kubectl's history
/// viewers, rollbackers and restarters for the kinds Twinset has).
fn is_set(kind: Kind) -> bool {
    matches!(kind, Kind::DaemonSet | Kind::StatefulSet)
}

/// kubectl's refusal of a kind that has no `what` (history viewer, rollbacker).
fn require_set(kind: Kind, what: &str) -> anyhow::Result<()> {
    if !is_set(kind) {
        bail!(
            "no {what} has been implemented for \"{}\"",
            group_kind(kind)
        );
    }
    Ok(())
}

/// The set's selector and pod template, whatever its kind.
fn parts(set: &Object) -> (Option<&LabelSelector>, Option<&PodTemplateSpec>) {
    let spec = match &set.kind {
        Some(Variant::DaemonSet(d)) => d
            .spec
            .as_ref()
            .map(|s| (s.selector.as_ref(), s.template.as_ref())),
        Some(Variant::StatefulSet(s)) => s
            .spec
            .as_ref()
            .map(|s| (s.selector.as_ref(), s.template.as_ref())),
        _ => None,
    };
    spec.unwrap_or((None, None))
}

/// The set's pod template.
fn template(set: &Object) -> Option<&PodTemplateSpec> {
    parts(set).1
}

/// The set's label selector.
fn selector(set: &Object) -> Option<&LabelSelector> {
    parts(set).0
}

/// The set's pod template, to change it (created when missing); None for other kinds.
fn template_mut(set: &mut Object) -> Option<&mut PodTemplateSpec> {
    let template = match &mut set.kind {
        Some(Variant::DaemonSet(d)) => &mut d.spec.get_or_insert_with(Default::default).template,
        Some(Variant::StatefulSet(s)) => &mut s.spec.get_or_insert_with(Default::default).template,
        _ => return None,
    };
    Some(template.get_or_insert_with(Default::default))
}

/// Runs `each` for every name, going on past failures as kubectl does: every failure is
/// printed as it happens and the command fails at the end.
async fn for_each_name(
    names: Vec<String>,
    mut each: impl AsyncFnMut(String) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut failed = false;
    for name in names {
        if let Err(e) = each(name).await {
            report::eprint_error(&e);
            failed = true;
        }
    }
    if failed {
        return Err(report::AlreadyReported.into());
    }
    Ok(())
}

/// `rollout pause|resume`: kubectl pauses Deployments only; for a DaemonSet or a
/// StatefulSet (once it is found) it says `daemonsets.apps "x" pausing is not supported`.
async fn refuse(ctx: &Ctx, args: RolloutTargetArgs, verb: &str) -> anyhow::Result<()> {
    let (kind, names, ns) = targets(&args)?;
    let mut client = ctx.client().await?;
    for_each_name(names, async |name| {
        get_object(&mut client, kind, &ns, &name).await?;
        bail!(
            "{} \"{name}\" {verb} is not supported",
            kind.group_resource()
        )
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::{DaemonSet, DaemonSetSpec, ObjectMeta, StatefulSet};

    #[test]
    fn group_kinds_print_as_go_prints_them() {
        assert_eq!(group_kind(Kind::DaemonSet), "DaemonSet.apps");
        assert_eq!(group_kind(Kind::Pod), "Pod");
    }

    #[test]
    fn templates_of_both_kinds_are_reached_and_created() {
        let mut ds: Object = DaemonSet {
            spec: Some(DaemonSetSpec {
                selector: Some(LabelSelector::default()),
                ..Default::default()
            }),
            ..Default::default()
        }
        .into();
        assert!(template(&ds).is_none());
        assert!(selector(&ds).is_some());
        template_mut(&mut ds)
            .expect("a DaemonSet has a template")
            .metadata = Some(ObjectMeta::default());
        assert!(template(&ds).is_some_and(|t| t.metadata.is_some()));
        let mut sts: Object = StatefulSet::default().into();
        assert!(template_mut(&mut sts).is_some());
        assert!(template(&sts).is_some());
        let mut pod: Object = twinset_proto::v1::Pod::default().into();
        assert!(template_mut(&mut pod).is_none());
    }
}
