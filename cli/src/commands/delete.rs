//! `twinset delete KIND NAME | -f FILE`: prints kubectl's `kind.group "name" deleted`
//! and, as kubectl does by default, waits until each object is gone.
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
    let grace = if args.force {
        Some(0)
    } else if args.now {
        Some(1)
    } else if args.grace_period >= 0 {
        Some(args.grace_period)
    } else {
        None
    };
    if args.force && grace == Some(0) {
        eprintln!("Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.");
    }
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
                report::outln(&format!("{} \"{}\" deleted", t.kind.qualified(), t.name));
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
