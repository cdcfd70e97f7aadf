//! `twinset logs POD [-c C] [-f] [-p]`: streams a container's log (or, with
//! `--previous`, its last terminated instance's) through the control plane.
use super::{namespace, Ctx};
use crate::args::LogsArgs;
use crate::client::not_found;
use anyhow::bail;
use futures::StreamExt as _;
use std::io::Write as _;
use twinset_proto::kinds::Kind;
use twinset_proto::v1::LogsRequest;

/// Runs `logs`.
pub async fn run(ctx: &Ctx, args: LogsArgs) -> anyhow::Result<()> {
    let pod = match args.pod.split_once('/') {
        Some((kind, name)) => {
            if super::parse_kind(kind)? != Kind::Pod {
                bail!("logs of a {kind} are not supported yet: name a pod (pod/NAME or NAME)");
            }
            name.to_string()
        }
        None => args.pod.clone(),
    };
    let req = LogsRequest {
        namespace: namespace(args.namespace.as_deref()),
        pod: pod.clone(),
        container: args.container.clone().unwrap_or_default(),
        follow: args.follow,
        tail_lines: (args.tail >= 0).then_some(args.tail),
        previous: args.previous,
    };
    let mut client = ctx.client().await?;
    let mut stream = match client.cluster.logs(req).await {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == tonic::Code::NotFound && !s.message().contains("container") => {
            return Err(not_found(Kind::Pod, &pod))
        }
        Err(s) => return Err(client.error(s)),
    };
    let mut stdout = std::io::stdout();
    while let Some(item) = stream.next().await {
        let chunk = item.map_err(|s| client.error(s))?;
        let written = stdout.write_all(&chunk.data).and_then(|()| stdout.flush());
        if let Err(e) = written {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e.into());
        }
    }
    Ok(())
}
