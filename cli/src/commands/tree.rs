//! `twinset tree [-n NS | -A]`: lists the sets, their pods and claims, and the nodes,
//! and prints them as [`crate::print::tree`] draws them.
use super::{list, namespace, Ctx};
use crate::args::TreeArgs;
use crate::client::Client;
use crate::print::tree::{self, Objects, Options};
use crate::report;
use std::io::IsTerminal as _;
use twinset_proto::kinds::Kind;
use twinset_proto::v1::Object;

/// Runs `tree`.
pub async fn run(ctx: &Ctx, args: TreeArgs) -> anyhow::Result<()> {
    let ns = if args.all_namespaces {
        String::new()
    } else {
        namespace(args.namespace.as_deref())
    };
    let mut client = ctx.client().await?;
    let c = &mut client;
    let daemon_sets = items(c, Kind::DaemonSet, &ns, Object::into_daemon_set).await?;
    let stateful_sets = items(c, Kind::StatefulSet, &ns, Object::into_stateful_set).await?;
    if daemon_sets.is_empty() && stateful_sets.is_empty() {
        eprintln!("{}", super::get::no_resources(Kind::DaemonSet, &ns));
        return Ok(());
    }
    let pods = items(c, Kind::Pod, &ns, Object::into_pod).await?;
    let claims = items(
        c,
        Kind::PersistentVolumeClaim,
        &ns,
        Object::into_persistent_volume_claim,
    )
    .await?;
    let nodes = items(c, Kind::Node, "", Object::into_node).await?;
    let opts = Options {
        show_namespace: args.all_namespaces,
        colour: tree::use_colour(
            std::io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ),
    };
    let drawn = tree::render(
        &Objects {
            nodes: &nodes,
            daemon_sets: &daemon_sets,
            stateful_sets: &stateful_sets,
            pods: &pods,
            claims: &claims,
        },
        opts,
    );
    report::out(&drawn);
    Ok(())
}

/// Every object of `kind` in `ns` ("" for all), as its message type.
async fn items<T>(
    client: &mut Client,
    kind: Kind,
    ns: &str,
    unwrap: fn(Object) -> Option<T>,
) -> anyhow::Result<Vec<T>> {
    let (objects, _) = list(client, kind, ns, "", "").await?;
    Ok(objects.into_iter().filter_map(unwrap).collect())
}
