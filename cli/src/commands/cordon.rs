//! `twinset cordon|uncordon NODE`: sets or clears spec.unschedulable.
use super::{modify, Ctx};
use crate::args::NodeNamesArgs;
use crate::client::Client;
use crate::report::{self, AlreadyReported};
use anyhow::bail;
use twinset_proto::kinds::Kind;
use twinset_proto::v1::object;

/// Sets `spec.unschedulable` of node `name` to `cordon`; whether it changed (the step
/// `cordon`, `uncordon` and `drain` share).
pub async fn set_unschedulable(
    client: &mut Client,
    name: &str,
    cordon: bool,
) -> anyhow::Result<bool> {
    modify(client, Kind::Node, "", name, |obj| {
        let Some(object::Kind::Node(node)) = obj.kind.as_mut() else {
            bail!("{name} is not a node");
        };
        let spec = node.spec.get_or_insert_with(Default::default);
        let changed = spec.unschedulable != cordon;
        spec.unschedulable = cordon;
        Ok((changed, changed))
    })
    .await
}

/// Runs `cordon` (`cordon = true`) or `uncordon`.
pub async fn run(ctx: &Ctx, args: NodeNamesArgs, cordon: bool) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let verb = if cordon { "cordoned" } else { "uncordoned" };
    let mut failed = false;
    for name in &args.nodes {
        let name = name.strip_prefix("node/").unwrap_or(name);
        match set_unschedulable(&mut client, name, cordon).await {
            Ok(true) => report::outln(&format!("node/{name} {verb}")),
            Ok(false) => report::outln(&format!("node/{name} already {verb}")),
            Err(e) => {
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
