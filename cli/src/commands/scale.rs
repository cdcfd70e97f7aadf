//! `twinset scale sts NAME --replicas=N`: prints `statefulset.apps/NAME scaled`.
use super::{get_object, namespace, parse_target, Ctx};
use crate::args::ScaleArgs;
use crate::print::format;
use crate::report;
use anyhow::bail;
use twinset_proto::kinds::Kind;
use twinset_proto::v1::ScaleRequest;

/// Runs `scale`.
pub async fn run(ctx: &Ctx, args: ScaleArgs) -> anyhow::Result<()> {
    let (first, rest) = match args.target.split_first() {
        Some((f, r)) => (f.clone(), r.to_vec()),
        None => bail!("resource(s) were provided, but no name was specified"),
    };
    let (kind, names) = parse_target(&first, &rest)?;
    let [name] = names.as_slice() else {
        bail!("resource(s) were provided, but no name was specified");
    };
    if kind != Kind::StatefulSet {
        bail!(
            "{} \"{name}\" cannot be scaled: only statefulsets have replicas",
            kind.group_resource()
        );
    }
    if args.replicas < 0 {
        bail!(
            "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0"
        );
    }
    let ns = namespace(args.namespace.as_deref());
    let mut client = ctx.client().await?;
    if let Some(expected) = args.current_replicas {
        let obj = get_object(&mut client, kind, &ns, name).await?;
        let current = obj
            .as_stateful_set()
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.replicas)
            .unwrap_or(1);
        if current != expected {
            bail!("Expected replicas to be {expected}, was {current}");
        }
    }
    let req = ScaleRequest {
        key: Some(format::key(kind, &ns, name)),
        replicas: args.replicas,
    };
    match client.cluster.scale(req).await {
        Ok(_) => {
            report::outln(&format!("{}/{name} scaled", kind.qualified()));
            Ok(())
        }
        Err(s) => Err(client.error_for(s, kind, name)),
    }
}
