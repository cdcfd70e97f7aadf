//! `twinset delete KIND NAME | -f FILE`: prints kubectl's `kind.group "name" deleted`
//! (`force deleted` at grace period 0) and, as kubectl does by default, waits until each
//! object is gone.
use super::{list, namespace, parse_target, Ctx};
use crate::args::DeleteArgs;
use crate::client::Client;
use crate::report::{self, AlreadyReported};
use anyhow::bail;
use tokio::time::Instant;
use twinset_proto::kinds::Kind;
use twinset_proto::v1::DeleteRequest;

struct Target {
    kind: Kind,
    namespace: String,
    name: String,
}

/// Runs `delete`.
pub async fn run(ctx: &Ctx, args: DeleteArgs) -> anyhow::Result<()> {
    let policy = match args.cascade.as_str() {
        "background" | "true" => "Background",
        "orphan" | "false" => "Orphan",
        "foreground" => "Foreground",
        other => bail!(
            "invalid cascade value ({other}). Must be \"background\", \"foreground\", or \"orphan\""
        ),
    };
    let grace = grace_period(args.force, args.now, args.grace_period)?;
    if args.force && grace == Some(0) {
        eprintln!("Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.");
    }
    // kubectl's word for a deletion that does not wait for the pod's processes.
    let operation = if grace == Some(0) {
        "force deleted"
    } else {
        "deleted"
    };
    let ns = namespace(args.namespace.as_deref());
    let mut client = ctx.client().await?;

    let mut targets = Vec::new();
    if !args.filenames.is_empty() {
        if args.kind.is_some() {
            bail!("resource(s) were provided, but no name was specified alongside -f");
        }
        for source in crate::manifests::read_all(&args.filenames)? {
            for obj in source.objects {
                let kind = obj.kind();
                let namespace = if obj.namespace().is_empty() {
                    ns.clone()
                } else {
                    obj.namespace().to_string()
                };
                targets.push(Target {
                    kind,
                    namespace,
                    name: obj.name().to_string(),
                });
            }
        }
    } else {
        let Some(kind_word) = args.kind.as_deref() else {
            bail!("You must provide one or more resources by argument or filename.");
        };
        let (kind, names) = parse_target(kind_word, &args.names)?;
        let names = if args.all || args.selector.is_some() {
            if !names.is_empty() {
                bail!("name cannot be provided when a selector or --all is specified");
            }
            let (items, _) = list(
                &mut client,
                kind,
                &ns,
                args.selector.as_deref().unwrap_or(""),
                "",
            )
            .await?;
            if items.is_empty() {
                eprintln!("No resources found");
                return Ok(());
            }
            items.iter().map(|o| o.name().to_string()).collect()
        } else {
            if names.is_empty() {
                bail!("resource(s) were provided, but no name was specified");
            }
            names
        };
        for name in names {
            targets.push(Target {
                kind,
                namespace: ns.clone(),
                name,
            });
        }
    }

    let deadline = args
        .timeout
        .filter(|d| !d.is_zero())
        .map(|d| Instant::now() + d);
    let mut failed = false;
    let mut deleted = Vec::new();
    for t in targets {
        let req = DeleteRequest {
            key: Some(crate::print::format::key(t.kind, &t.namespace, &t.name)),
            propagation_policy: policy.to_string(),
            grace_period_seconds: grace,
        };
        match client.cluster.delete(req).await {
            Ok(resp) => {
                report::outln(&format!(
                    "{} \"{}\" {operation}",
                    t.kind.qualified(),
                    t.name
                ));
                let uid = resp
                    .into_inner()
                    .object
                    .map(|o| o.meta().uid.clone())
                    .unwrap_or_default();
                deleted.push((t, uid));
            }
            Err(s) if s.code() == tonic::Code::NotFound && args.ignore_not_found => {}
            Err(s) => {
                report::eprint_error(&client.error_for(s, t.kind, &t.name));
                failed = true;
            }
        }
    }
    if args.wait {
        for (t, uid) in deleted {
            if let Err(e) = wait_gone(&mut client, &t, &uid, deadline).await {
                report::eprint_error(&e);
                failed = true;
            }
        }
    }
    if failed {
        return Err(AlreadyReported.into());
    }
    Ok(())
}

/// Waits until the object is gone, or replaced by a new one with the same name
/// (a StatefulSet pod comes back under its old name with a new uid).
async fn wait_gone(
    client: &mut Client,
    t: &Target,
    uid: &str,
    deadline: Option<Instant>,
) -> anyhow::Result<()> {
    crate::watch::until(client, t.kind, &t.namespace, &t.name, deadline, |obj| {
        Ok(match obj {
            None => true,
            Some(o) => !uid.is_empty() && o.meta().uid != uid,
        })
    })
    .await
}

/// The grace period kubectl sends for `--force`, `--now` and `--grace-period` (None: the
/// pod's own). As kubectl: 0 without `--force` becomes 1 (no immediate deletion by
/// accident), `--force` alone is 0, and `--now` is 1 and excludes `--grace-period`.
fn grace_period(force: bool, now: bool, grace: i64) -> anyhow::Result<Option<i64>> {
    let mut grace = grace;
    if now {
        if grace != -1 {
            bail!("--now and --grace-period cannot be specified together");
        }
        grace = 1;
    }
    if grace == 0 && !force {
        grace = 1;
    }
    if force && grace < 0 {
        grace = 0;
    }
    Ok((grace >= 0).then_some(grace))
}

#[cfg(test)]
mod tests {
    use super::grace_period;

    #[test]
    fn grace_periods_are_kubectls() {
        let g = |force, now, grace| grace_period(force, now, grace).map_err(|e| e.to_string());
        assert_eq!(g(false, false, -1), Ok(None), "the pod's own");
        assert_eq!(g(false, false, 7), Ok(Some(7)));
        assert_eq!(g(false, false, 0), Ok(Some(1)), "0 needs --force");
        assert_eq!(g(true, false, -1), Ok(Some(0)));
        assert_eq!(g(true, false, 0), Ok(Some(0)));
        assert_eq!(
            g(true, false, 5),
            Ok(Some(5)),
            "--force keeps an explicit grace"
        );
        assert_eq!(g(false, true, -1), Ok(Some(1)));
        assert_eq!(g(true, true, -1), Ok(Some(1)));
        assert_eq!(
            g(false, true, 3),
            Err("--now and --grace-period cannot be specified together".to_string())
        );
    }
}
