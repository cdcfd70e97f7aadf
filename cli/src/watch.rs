//! Waiting on one object through the Watch stream: read it, then follow its
//! changes until a condition holds (used by `delete --wait` and `rollout status`).
use crate::client::Client;
use anyhow::bail;
use futures::StreamExt as _;
use std::time::Duration;
use tokio::time::Instant;
use twinset_proto::kinds::Kind;
use twinset_proto::v1::{GetRequest, Object, WatchRequest};

/// Follows the object `kind/namespace/name` until `check` returns true. `check` sees
/// `Some(object)` for its current state and `None` once it is gone. A `deadline`
/// turns a wait that is too long into kubectl's timeout error.
pub async fn until<F>(
    client: &mut Client,
    kind: Kind,
    namespace: &str,
    name: &str,
    deadline: Option<Instant>,
    check: F,
) -> anyhow::Result<()>
where
    F: FnMut(Option<&Object>) -> anyhow::Result<bool>,
{
    let fut = follow(client, kind, namespace, name, check);
    match deadline {
        None => fut.await,
        Some(d) => match tokio::time::timeout_at(d, fut).await {
            Ok(r) => r,
            Err(_) => bail!(
                "timed out waiting for the condition on {}/{name}",
                kind.resource()
            ),
        },
    }
}

async fn follow<F>(
    client: &mut Client,
    kind: Kind,
    namespace: &str,
    name: &str,
    mut check: F,
) -> anyhow::Result<()>
where
    F: FnMut(Option<&Object>) -> anyhow::Result<bool>,
{
    let key = crate::print::format::key(kind, namespace, name);
    let mut backoff = Duration::from_millis(100);
    loop {
        // Read the current state; it also gives the revision to watch from.
        let current = match client
            .cluster
            .get(GetRequest {
                key: Some(key.clone()),
            })
            .await
        {
            Ok(r) => r.into_inner().object,
            Err(s) if s.code() == tonic::Code::NotFound => None,
            Err(s) => return Err(client.error(s)),
        };
        if check(current.as_ref())? {
            return Ok(());
        }
        let from = match &current {
            Some(o) => o.meta().resource_version.clone(),
            None => String::new(),
        };
        let req = WatchRequest {
            kind: kind.as_str().to_string(),
            namespace: key.namespace.clone(),
            label_selector: String::new(),
            resource_version: from,
        };
        let mut stream = match client.cluster.watch(req).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::OutOfRange => continue,
            Err(s) => return Err(client.error(s)),
        };
        while let Some(item) = stream.next().await {
            let event = match item {
                Ok(e) => e,
                Err(s) => {
                    tracing::debug!(error = %s, "watch ended, reading again");
                    break;
                }
            };
            let Some(obj) = event.object else { continue };
            if obj.name() != name {
                continue;
            }
            backoff = Duration::from_millis(100);
            let done = if event.r#type == "DELETED" {
                check(None)?
            } else {
                check(Some(&obj))?
            };
            if done {
                return Ok(());
            }
        }
        // The stream ended (server restart, history too old): read again after a short pause.
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
