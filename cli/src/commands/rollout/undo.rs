//! `twinset rollout undo ds/NAME|sts/NAME [--to-revision N]`: write an earlier
//! revision's template back into the set (compare-and-swap, retried on conflict), as
//! kubectl's rollbackers do; the controller then rolls the pods as for any other change.
use super::history::revisions;
use super::{for_each_name, require_set, targets, template, template_mut, Ctx};
use crate::args::RolloutUndoArgs;
use crate::commands::{get_object, modify};
use crate::print::describe::pod_template_unaligned;
use crate::print::format::qualified_name;
use crate::report;
use anyhow::{anyhow, bail};
use twinset_proto::v1::{ControllerRevision, Object, PodTemplateSpec};

/// The annotation kubectl's client-side apply keeps on what it applied.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Runs `rollout undo`.
pub async fn run(ctx: &Ctx, args: RolloutUndoArgs) -> anyhow::Result<()> {
    let (kind, names, ns) = targets(&args.sets)?;
    let dry_run = match args.dry_run.as_str() {
        "none" | "false" => false,
        "client" | "true" => true,
        "server" => bail!(
            "--dry-run=server is not supported by rollout undo (Twinset's Update has no dry run); use --dry-run=client"
        ),
        other => bail!(
            "Invalid dry-run value ({other}). Must be \"none\", \"server\", or \"client\"."
        ),
    };
    require_set(kind, "rollbacker")?;
    let mut client = ctx.client().await?;
    for_each_name(names, async |name| {
        let set = get_object(&mut client, kind, &ns, &name).await?;
        if set.meta().annotations.contains_key(LAST_APPLIED) {
            eprintln!(
                "Warning: resource {}/{name} was previously managed with 'kubectl apply'. Rolling back will not update the {LAST_APPLIED} annotation, which may cause unexpected behavior on future 'kubectl apply' operations. Consider using 'kubectl apply' with your previous configuration file instead.",
                kind.resource()
            );
        }
        let revisions = revisions(&mut client, &set).await?;
        let target = pick(&revisions, args.to_revision)?
            .data
            .clone()
            .unwrap_or_default();
        let head = qualified_name(&set);
        if dry_run {
            report::out(&format!(
                "{head} will roll back to {} (dry run)\n",
                pod_template_unaligned(&target)
            ));
            return Ok(());
        }
        let outcome = modify(&mut client, kind, &ns, &name, |obj| {
            Ok(match roll_back(obj, &target) {
                true => (true, "rolled back".to_string()),
                false => (
                    false,
                    format!(
                        "skipped rollback (current template already matches revision {})",
                        args.to_revision
                    ),
                ),
            })
        })
        .await
        .map_err(|e| anyhow!("failed restoring revision {}: {e:#}", args.to_revision))?;
        report::outln(&format!("{head} {outcome}"));
        Ok(())
    })
    .await
}

/// kubectl's findHistory: revision `to`, or for 0 the one before the newest; with its
/// errors. `revisions` are in number order.
pub fn pick(revisions: &[ControllerRevision], to: i64) -> anyhow::Result<&ControllerRevision> {
    let not_found = || anyhow!("unable to find specified revision {to} in history");
    if to < 0 {
        return Err(not_found());
    }
    if to == 0 {
        return match revisions {
            [.., previous, _] => Ok(previous),
            _ => bail!("no last revision to roll back to"),
        };
    }
    revisions
        .iter()
        .find(|r| r.revision == to)
        .ok_or_else(not_found)
}

/// Puts `target` in the set's template; false when it is already there (kubectl's
/// "skipped rollback").
pub fn roll_back(set: &mut Object, target: &PodTemplateSpec) -> bool {
    if template(set) == Some(target) {
        return false;
    }
    match template_mut(set) {
        Some(t) => {
            *t = target.clone();
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::history::tests::revision;
    use super::*;
    use twinset_proto::v1::{StatefulSet, StatefulSetSpec};

    #[test]
    fn the_default_is_the_revision_before_the_newest() -> anyhow::Result<()> {
        let revs = [
            revision("u", 1, "a"),
            revision("u", 4, "d"),
            revision("u", 7, "g"),
        ];
        assert_eq!(pick(&revs, 0)?.revision, 4);
        assert_eq!(pick(&revs, 1)?.revision, 1);
        let err = |to| pick(&revs, to).err().map(|e| e.to_string());
        assert_eq!(
            err(2).as_deref(),
            Some("unable to find specified revision 2 in history")
        );
        assert_eq!(
            err(-1).as_deref(),
            Some("unable to find specified revision -1 in history")
        );
        let one = [revision("u", 1, "a")];
        assert_eq!(
            pick(&one, 0).err().map(|e| e.to_string()).as_deref(),
            Some("no last revision to roll back to")
        );
        assert_eq!(pick(&one, 1)?.revision, 1);
        Ok(())
    }

    #[test]
    fn rolling_back_writes_the_template_unless_it_is_there() {
        let a = revision("u", 1, "a").data.unwrap_or_default();
        let b = revision("u", 2, "b").data.unwrap_or_default();
        let mut set: Object = StatefulSet {
            spec: Some(StatefulSetSpec {
                template: Some(b),
                ..Default::default()
            }),
            ..Default::default()
        }
        .into();
        assert!(roll_back(&mut set, &a));
        assert_eq!(template(&set), Some(&a));
        assert!(!roll_back(&mut set, &a));
    }
}
