//! `twinset apply -f FILE|DIR|-`: decode everything first (bad input writes
//! nothing), then Apply each object and print kubectl's lines.
use super::Ctx;
use crate::args::ApplyArgs;
use crate::client::Client;
use crate::print::format;
use crate::report::{self, AlreadyReported};
use anyhow::bail;
use twinset_proto::v1::{ApplyRequest, Object};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DryRun {
    None,
    Server,
    Client,
}

/// Runs `apply`.
pub async fn run(ctx: &Ctx, args: ApplyArgs) -> anyhow::Result<()> {
    let dry_run = match args.dry_run.as_str() {
        "none" | "false" => DryRun::None,
        "server" => DryRun::Server,
        "client" | "true" => DryRun::Client,
        other => {
            bail!("Invalid dry-run value ({other}). Must be \"none\", \"server\", or \"client\".")
        }
    };
    let sources = crate::manifests::read_all(&args.filenames)?;
    let mut objects: Vec<(String, Object)> = Vec::new();
    for source in sources {
        for obj in source.objects {
            objects.push((source.name.clone(), obj));
        }
    }
    if objects.is_empty() {
        bail!("no objects passed to apply");
    }
    for (_, obj) in &mut objects {
        set_namespace(obj, args.namespace.as_deref())?;
    }

    let mut client = ctx.client().await?;
    let mut failed = false;
    for (source, obj) in objects {
        if let Err(e) = apply_one(&mut client, &source, obj, dry_run).await {
            report::eprint_error(&e);
            failed = true;
        }
    }
    if failed {
        return Err(AlreadyReported.into());
    }
    Ok(())
}

/// Fills in the namespace of a namespaced object (`-n`, else `default`) and refuses a
/// conflicting `-n`, as kubectl does.
fn set_namespace(obj: &mut Object, flag: Option<&str>) -> anyhow::Result<()> {
    let kind = obj.kind();
    if !kind.namespaced() {
        return Ok(());
    }
    let current = obj.namespace().to_string();
    match flag.filter(|s| !s.is_empty()) {
        Some(ns) if !current.is_empty() && current != ns => bail!(
            "the namespace from the provided object \"{current}\" does not match the namespace \"{ns}\". You must pass '--namespace={current}' to perform this operation."
        ),
        Some(ns) => obj.meta_mut().namespace = ns.to_string(),
        None if current.is_empty() => {
            obj.meta_mut().namespace = super::DEFAULT_NAMESPACE.to_string()
        }
        None => {}
    }
    Ok(())
}

async fn apply_one(
    client: &mut Client,
    source: &str,
    obj: Object,
    dry_run: DryRun,
) -> anyhow::Result<()> {
    let name = format::qualified_name(&obj);
    let kind = obj.kind();
    if dry_run == DryRun::Client {
        let exists = match super::get_object(client, kind, obj.namespace(), obj.name()).await {
            Ok(_) => true,
            Err(e)
                if e.downcast_ref::<crate::report::Printed>()
                    .is_some_and(|p| p.0.contains("(NotFound)")) =>
            {
                false
            }
            Err(e) => return Err(e),
        };
        let outcome = if exists { "configured" } else { "created" };
        report::outln(&format!("{name} {outcome} (dry run)"));
        return Ok(());
    }
    let req = ApplyRequest {
        object: Some(obj),
        dry_run: dry_run == DryRun::Server,
        create_only: false,
    };
    let resp = match client.cluster.apply(req).await {
        Ok(r) => r.into_inner(),
        Err(s) => {
            let verb = if s.code() == tonic::Code::NotFound {
                "applying"
            } else {
                "creating"
            };
            let err = client.error(s);
            return Err(match err.downcast::<crate::report::Printed>() {
                Ok(p) => {
                    // kubectl names the file: `Error from server (X): error when creating "f.yaml": ...`.
                    let line = match p.0.split_once("): ") {
                        Some((head, msg)) => {
                            format!("{head}): error when {verb} \"{source}\": {msg}")
                        }
                        None => p.0,
                    };
                    crate::report::Printed(line).into()
                }
                Err(other) => other,
            });
        }
    };
    for note in &resp.notes {
        let note = if dry_run == DryRun::Server {
            format!("{note} (server dry run)")
        } else {
            note.clone()
        };
        report::outln(&note);
    }
    let shown = resp
        .object
        .as_ref()
        .map(format::qualified_name)
        .unwrap_or(name);
    let suffix = if dry_run == DryRun::Server {
        " (server dry run)"
    } else {
        ""
    };
    report::outln(&format!("{shown} {}{suffix}", resp.outcome));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::{DaemonSet, Node, ObjectMeta};

    #[test]
    fn namespace_defaults_and_conflicts() {
        let mut ds = Object::from(DaemonSet {
            metadata: Some(ObjectMeta {
                name: "x".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(set_namespace(&mut ds, None).is_ok());
        assert_eq!(ds.namespace(), "default");
        assert!(set_namespace(&mut ds, Some("default")).is_ok());
        let err = set_namespace(&mut ds, Some("other"))
            .err()
            .map(|e| e.to_string());
        assert!(err
            .is_some_and(|e| e.starts_with("the namespace from the provided object \"default\"")));
        let mut node = Object::from(Node::default());
        assert!(set_namespace(&mut node, Some("x")).is_ok());
        assert_eq!(node.namespace(), "");
    }
}
