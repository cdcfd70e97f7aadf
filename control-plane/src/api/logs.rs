//! Cluster.Logs: finds the pod's node and streams the logs from that node's agent
//! (NodeAgent.Logs on the node's InternalIP and daemon endpoint port), over TLS: the
//! agent must present the cluster CA's serving certificate for the node's name, and the
//! control plane presents its own certificate, the only one agents answer.

use crate::store::Store;
use futures::{Stream, StreamExt};
use std::pin::Pin;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use twinset_proto::tls::server::AgentDialer;
use twinset_proto::tls::ConnectError;
use twinset_proto::v1::node_agent_client::NodeAgentClient;
use twinset_proto::v1::{LogChunk, LogsRequest, Node};
use twinset_proto::Kind;

/// The stream handed back to the client.
pub type LogStream = Pin<Box<dyn Stream<Item = Result<LogChunk, Status>> + Send + 'static>>;

/// How long to wait for an agent to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The agent address of a node: "https://IP:PORT", from status.addresses and the
/// kubelet daemon endpoint.
pub fn agent_endpoint(node: &Node) -> Option<String> {
    let status = node.status.as_ref()?;
    let port = status
        .daemon_endpoints
        .as_ref()?
        .kubelet_endpoint
        .as_ref()?
        .port;
    if port <= 0 {
        return None;
    }
    let addr = status
        .addresses
        .iter()
        .find(|a| a.r#type == "InternalIP")
        .or_else(|| status.addresses.iter().find(|a| a.r#type == "Hostname"))
        .or(status.addresses.first())?;
    let host = if addr.address.contains(':') {
        format!("[{}]", addr.address)
    } else {
        addr.address.clone()
    };
    Some(format!("https://{host}:{port}"))
}

/// Opens the log stream of one pod's container through its agent, dialled with `agents`.
pub async fn proxy(
    store: &dyn Store,
    agents: &AgentDialer,
    mut req: LogsRequest,
    shutdown: CancellationToken,
) -> Result<LogStream, Status> {
    if req.namespace.is_empty() {
        req.namespace = "default".into();
    }
    let pod = store
        .get(Kind::Pod, &req.namespace, &req.pod)
        .and_then(|o| o.into_pod())
        .ok_or_else(|| Status::not_found(format!("pods {:?} not found", req.pod)))?;
    let spec = pod.spec.unwrap_or_default();
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    if req.container.is_empty() {
        match names.as_slice() {
            [one] => req.container = one.to_string(),
            _ => {
                return Err(Status::invalid_argument(format!(
                    "a container name must be specified for pod {}, choose one of: [{}]",
                    req.pod,
                    names.join(" ")
                )))
            }
        }
    } else if !names.contains(&req.container.as_str())
        && !spec.init_containers.iter().any(|c| c.name == req.container)
    {
        return Err(Status::invalid_argument(format!(
            "container {} is not valid for pod {}",
            req.container, req.pod
        )));
    }
    if spec.node_name.is_empty() {
        return Err(Status::failed_precondition(format!(
            "pod {:?} is not bound to a node yet",
            req.pod
        )));
    }
    let node = store
        .get(Kind::Node, "", &spec.node_name)
        .and_then(|o| o.into_node())
        .ok_or_else(|| {
            Status::failed_precondition(format!(
                "pod {:?} is bound to node {:?}, which no longer exists",
                req.pod, spec.node_name
            ))
        })?;
    let url = agent_endpoint(&node).ok_or_else(|| {
        Status::unavailable(format!(
            "node {:?} has not reported its agent endpoint (status.daemonEndpoints)",
            spec.node_name
        ))
    })?;
    let channel = agents
        .connect(&spec.node_name, &url, CONNECT_TIMEOUT)
        .await
        .map_err(|e| {
            Status::unavailable(format!(
                "cannot reach the agent of node {:?} at {url}: {}",
                spec.node_name,
                why_not_connected(&e)
            ))
        })?;
    // The request goes on as the client sent it (follow, tailLines, previous); the
    // agent answers for the instance and says when there is no previous one.
    let stream = NodeAgentClient::new(channel).logs(req).await?.into_inner();
    Ok(Box::pin(stream.take_until(shutdown.cancelled_owned())))
}

/// Why dialling an agent failed: for a transport error its innermost cause (a refused
/// connection, an untrusted certificate), where the outer ones say only "transport error".
pub fn why_not_connected(e: &ConnectError) -> String {
    let ConnectError::Transport(t) = e else {
        return e.to_string();
    };
    let mut last: &dyn std::error::Error = t;
    while let Some(inner) = last.source() {
        last = inner;
    }
    last.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::{DaemonEndpoint, NodeAddress, NodeDaemonEndpoints, NodeStatus};

    #[test]
    fn endpoint_from_node_status() {
        let mut node = Node {
            status: Some(NodeStatus {
                addresses: vec![
                    NodeAddress {
                        r#type: "Hostname".into(),
                        address: "host".into(),
                    },
                    NodeAddress {
                        r#type: "InternalIP".into(),
                        address: "127.0.0.1".into(),
                    },
                ],
                daemon_endpoints: Some(NodeDaemonEndpoints {
                    kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            agent_endpoint(&node).as_deref(),
            Some("https://127.0.0.1:10250")
        );
        node.status.as_mut().unwrap().daemon_endpoints = None;
        assert_eq!(agent_endpoint(&node), None);
    }
}
