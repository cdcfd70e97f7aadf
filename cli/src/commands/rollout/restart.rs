//! `twinset rollout restart ds/NAME|sts/NAME...`: kubectl's restarter. The template gets
//! the annotation `kubectl.kubernetes.io/restartedAt` (now, RFC 3339); that new template
//! is an ordinary rolling update, so every pod is replaced once.
use super::{for_each_name, is_set, targets, template_mut, Ctx};
use crate::args::RolloutTargetArgs;
use crate::commands::modify;
use crate::report;
use anyhow::bail;
use twinset_proto::v1::Object;

/// The template annotation kubectl's restart sets.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Runs `rollout restart`.
pub async fn run(ctx: &Ctx, args: RolloutTargetArgs) -> anyhow::Result<()> {
    let (kind, names, ns) = targets(&args)?;
    let mut client = ctx.client().await?;
    for_each_name(names, async |name| {
        if !is_set(kind) {
            // Found or not, kubectl names the object and refuses the kind.
            crate::commands::get_object(&mut client, kind, &ns, &name).await?;
            bail!(
                "{} \"{name}\" restarting is not supported",
                kind.group_resource()
            );
        }
        let head = modify(&mut client, kind, &ns, &name, |obj| {
            restart(obj, &twinset_proto::time::now())?;
            Ok((true, crate::print::format::qualified_name(obj)))
        })
        .await?;
        report::outln(&format!("{head} restarted"));
        Ok(())
    })
    .await
}

/// Stamps the set's template with `now`; refused, as kubectl refuses an empty patch,
/// when the stamp is already `now` (a restart within the same second).
pub fn restart(set: &mut Object, now: &str) -> anyhow::Result<()> {
    let name = set.name().to_string();
    let Some(template) = template_mut(set) else {
        bail!("restarting is not supported");
    };
    let annotations = &mut template
        .metadata
        .get_or_insert_with(Default::default)
        .annotations;
    if annotations.get(RESTARTED_AT).map(String::as_str) == Some(now) {
        bail!(
            "failed to create patch for {name}: if restart has already been triggered within the past second, please wait before attempting to trigger another"
        );
    }
    annotations.insert(RESTARTED_AT.into(), now.into());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::template;
    use super::*;
    use twinset_proto::v1::{DaemonSet, ObjectMeta};

    #[test]
    fn the_stamp_goes_on_the_template_once_a_second() -> anyhow::Result<()> {
        let mut ds: Object = DaemonSet {
            metadata: Some(ObjectMeta {
                name: "web".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .into();
        restart(&mut ds, "2026-12-02T14:00:00Z")?;
        let stamp = |o: &Object| {
            template(o)
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.annotations.get(RESTARTED_AT).cloned())
        };
        assert_eq!(stamp(&ds).as_deref(), Some("2026-12-02T14:00:00Z"));
        let again = restart(&mut ds, "2026-12-02T14:00:00Z")
            .err()
            .map(|e| e.to_string());
        assert!(
            again
                .as_deref()
                .is_some_and(|e| e.starts_with("failed to create patch for web:")),
            "{again:?}"
        );
        restart(&mut ds, "2026-12-02T14:00:01Z")?;
        assert_eq!(stamp(&ds).as_deref(), Some("2026-12-02T14:00:01Z"));
        Ok(())
    }
}
