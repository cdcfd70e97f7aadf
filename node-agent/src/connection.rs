//! The agent's connection to the control plane, swappable while the agent runs: when the
//! node certificate is renewed, a new channel (whose handshakes present the new
//! certificate) takes over every later call, while calls already under way — the
//! assignment stream above all — go on undisturbed on the old one until they end.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::transport::Channel;
use tower::Service;
use twinset_proto::v1::nodes_client::NodesClient;

/// The Nodes client every part of the agent uses.
pub type Client = NodesClient<NodeConnection>;

/// A channel to the control plane that a renewal can replace.
#[derive(Clone, Debug)]
pub struct NodeConnection {
    current: Arc<RwLock<Channel>>,
}

impl NodeConnection {
    /// A connection that uses `channel` until [`NodeConnection::replace`].
    pub fn new(channel: Channel) -> NodeConnection {
        NodeConnection {
            current: Arc::new(RwLock::new(channel)),
        }
    }

    /// Sends every later call over `channel`.
    pub fn replace(&self, channel: Channel) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = channel;
    }

    fn channel(&self) -> Channel {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Service<http::Request<Body>> for NodeConnection {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is the chosen channel's, waited for in `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let mut channel = self.channel();
        Box::pin(async move {
            std::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
            channel.call(request).await
        })
    }
}
