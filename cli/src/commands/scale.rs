//! `twinset scale sts NAME --replicas=N`: prints `statefulset.apps/NAME scaled`. Only
//! StatefulSets scale (any other kind is refused here, in one line); the count itself,
//! negative included, is the server's to validate.
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
    if let Some(reason) = not_scalable(kind, name) {
        bail!(reason);
    }
    // A negative count goes to the server, whose validation error is the one to show.
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

/// Why objects of `kind` cannot be scaled (only StatefulSets have replicas), as one line.
fn not_scalable(kind: Kind, name: &str) -> Option<String> {
    match kind {
        Kind::StatefulSet => None,
        Kind::DaemonSet => Some(format!(
            "{} \"{name}\" cannot be scaled: a DaemonSet runs one pod on each eligible node (choose the nodes with a nodeSelector instead)",
            kind.group_resource()
        )),
        other => Some(format!(
            "{} \"{name}\" cannot be scaled: only statefulsets have replicas",
            other.group_resource()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_statefulsets_scale() {
        assert_eq!(not_scalable(Kind::StatefulSet, "web"), None);
        assert_eq!(
            not_scalable(Kind::DaemonSet, "node-monitor").as_deref(),
            Some("daemonsets.apps \"node-monitor\" cannot be scaled: a DaemonSet runs one pod on each eligible node (choose the nodes with a nodeSelector instead)")
        );
        assert_eq!(
            not_scalable(Kind::Pod, "p").as_deref(),
            Some("pods \"p\" cannot be scaled: only statefulsets have replicas")
        );
    }
}
