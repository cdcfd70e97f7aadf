//! One module per verb; this module dispatches and holds the small helpers the
//! client verbs share (kind words, namespaces, listing, events of an object).
pub mod agent;
pub mod apply;
pub mod bench;
pub mod certs;
pub mod control_plane;
pub mod cordon;
pub mod delete;
pub mod describe;
pub mod down;
pub mod drain;
pub mod get;
pub mod label;
pub mod logs;
pub mod rollout;
pub mod scale;
pub mod taint;
pub mod token;
pub mod tree;
pub mod up;

use crate::args::{Cli, Command};
use crate::client::Client;
use anyhow::{bail, Context as _};
use twinset_proto::kinds::Kind;
use twinset_proto::v1::{ListRequest, Object};

/// The namespace used when `-n` is not given.
pub const DEFAULT_NAMESPACE: &str = "default";

/// What every client verb needs: how to reach the server.
pub struct Ctx {
    server_flag: Option<String>,
    config_flag: Option<std::path::PathBuf>,
}

impl Ctx {
    /// Connects to the server of the kubeconfig (`--config`, `TWINSET_CONFIG`, or the one
    /// `twinset up` wrote), or the one named by `--server` / `TWINSET_SERVER`, over TLS.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let target =
            crate::client::resolve(self.server_flag.as_deref(), self.config_flag.as_deref())?;
        Client::connect(target).await
    }

    /// The raw `--server` / `TWINSET_SERVER` value, if any.
    pub fn server_flag(&self) -> Option<&str> {
        self.server_flag.as_deref()
    }
}

/// Runs the verb `cli` names.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Ctx {
        server_flag: cli.server,
        config_flag: cli.config,
    };
    match cli.command {
        Command::Apply(a) => apply::run(&ctx, a).await,
        Command::Get(a) => get::run(&ctx, a).await,
        Command::Describe(a) => describe::run(&ctx, a).await,
        Command::Delete(a) => delete::run(&ctx, a).await,
        Command::Logs(a) => logs::run(&ctx, a).await,
        Command::Label(a) => label::run(&ctx, a).await,
        Command::Taint(a) => taint::run(&ctx, a).await,
        Command::Cordon(a) => cordon::run(&ctx, a, true).await,
        Command::Uncordon(a) => cordon::run(&ctx, a, false).await,
        Command::Drain(a) => drain::run(&ctx, a).await,
        Command::Scale(a) => scale::run(&ctx, a).await,
        Command::Rollout(a) => rollout::run(&ctx, a).await,
        Command::Up(a) => up::run(a).await,
        Command::Down(a) => down::run(a).await,
        Command::ControlPlane(a) => control_plane::run(a).await,
        Command::Agent(a) => agent::run(&ctx, a).await,
        Command::Bench(a) => bench::run(&ctx, a).await,
        Command::Token(a) => token::run(&ctx, a).await,
        Command::Certs(a) => certs::run(&ctx, a).await,
        Command::Tree(a) => tree::run(&ctx, a).await,
        Command::FenceWatchdog(a) => {
            let dir = a.data_dir;
            tokio::task::spawn_blocking(move || twinset_node_agent::watchdog::run(&dir))
                .await?
                .context("fence watchdog")
        }
    }
}

/// A kind from the user's word (`ds`, `pods`, `daemonset.apps`, ...), or kubectl's error.
pub fn parse_kind(word: &str) -> anyhow::Result<Kind> {
    match Kind::parse(word) {
        Some(k) => Ok(k),
        None => bail!("the server doesn't have a resource type \"{word}\""),
    }
}

/// Splits `KIND NAME...` or `KIND/NAME ...` into a kind and names.
pub fn parse_target(first: &str, rest: &[String]) -> anyhow::Result<(Kind, Vec<String>)> {
    if let Some((kind, name)) = first.split_once('/') {
        let kind = parse_kind(kind)?;
        let mut names = vec![name.to_string()];
        for r in rest {
            match r.split_once('/') {
                Some((k, n)) if parse_kind(k)? == kind => names.push(n.to_string()),
                Some(_) => bail!("mixing kinds in one command is not supported: {r}"),
                None => bail!(
                    "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'twinset get resource/<resource_name>' instead of 'twinset get resource resource/<resource_name>'"
                ),
            }
        }
        if names.iter().any(String::is_empty) {
            bail!("arguments in resource/name form must have a single resource and name");
        }
        return Ok((kind, names));
    }
    Ok((parse_kind(first)?, rest.to_vec()))
}

/// The namespace of a verb: `-n`, else `default`.
pub fn namespace(flag: Option<&str>) -> String {
    flag.filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE)
        .to_string()
}

/// Lists objects of `kind`, sorted by namespace and name.
pub async fn list(
    client: &mut Client,
    kind: Kind,
    namespace: &str,
    label_selector: &str,
    field_selector: &str,
) -> anyhow::Result<(Vec<Object>, String)> {
    let req = ListRequest {
        kind: kind.as_str().to_string(),
        namespace: if kind.namespaced() {
            namespace.to_string()
        } else {
            String::new()
        },
        label_selector: label_selector.to_string(),
        field_selector: field_selector.to_string(),
    };
    let resp = match client.cluster.list(req).await {
        Ok(r) => r.into_inner(),
        Err(s) => return Err(client.error(s)),
    };
    let mut items = resp.items;
    items.sort_by(|a, b| (a.namespace(), a.name()).cmp(&(b.namespace(), b.name())));
    Ok((items, resp.resource_version))
}

/// Gets one object; NotFound becomes kubectl's line.
pub async fn get_object(
    client: &mut Client,
    kind: Kind,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Object> {
    let req = twinset_proto::v1::GetRequest {
        key: Some(crate::print::format::key(kind, namespace, name)),
    };
    match client.cluster.get(req).await {
        Ok(r) => match r.into_inner().object {
            Some(o) => Ok(o),
            None => Err(crate::client::not_found(kind, name)),
        },
        Err(s) => Err(client.error_for(s, kind, name)),
    }
}
/// Whether a gRPC status says a compare-and-swap lost a race (retry with a fresh read).
pub fn is_conflict(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Aborted | tonic::Code::FailedPrecondition
    )
}

/// Read-modify-write of one object with compare-and-swap, retried on conflict.
/// `change` edits the object and says whether it changed (plus a value to hand back);
/// an unchanged object is not written.
pub async fn modify<T>(
    client: &mut Client,
    kind: Kind,
    namespace: &str,
    name: &str,
    mut change: impl FnMut(&mut Object) -> anyhow::Result<(bool, T)>,
) -> anyhow::Result<T> {
    const ATTEMPTS: usize = 10;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut obj = get_object(client, kind, namespace, name).await?;
        let (changed, value) = change(&mut obj)?;
        if !changed {
            return Ok(value);
        }
        let req = twinset_proto::v1::UpdateRequest { object: Some(obj) };
        match client.cluster.update(req).await {
            Ok(_) => return Ok(value),
            Err(s) if is_conflict(&s) && attempt < ATTEMPTS => {
                tracing::debug!(error = %s, "conflict, retrying");
                continue;
            }
            Err(s) => return Err(client.error_for(s, kind, name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let (k, n) = parse_target("sts/mysql-db", &[]).unwrap_or((Kind::Pod, vec![]));
        assert_eq!(k, Kind::StatefulSet);
        assert_eq!(n, vec!["mysql-db".to_string()]);
        let (k, n) = parse_target("ds", &["a".into(), "b".into()]).unwrap_or((Kind::Pod, vec![]));
        assert_eq!(k, Kind::DaemonSet);
        assert_eq!(n.len(), 2);
        let err = parse_target("foo", &[]).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("the server doesn't have a resource type \"foo\"")
        );
    }
}
