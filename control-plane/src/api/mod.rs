//! The gRPC services: [`cluster::ClusterService`] (what clients use) and
//! [`nodes::NodesService`] (what agents use), plus what they share: the context and
//! the mapping of store errors onto gRPC status codes.

pub mod apply;
pub mod authz;
pub mod bootstrap;
pub mod cluster;
pub mod eviction;
pub mod gate;
pub mod inflight;
pub mod logs;
pub mod nodes;
pub mod refusals;
pub mod slots;
pub mod tokens;

use crate::controllers::node_lifecycle::Heartbeats;
use crate::ipam::Ipam;
use crate::store::{Error as StoreError, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use twinset_proto::Kind;

/// What the services share.
#[derive(Clone)]
pub struct Ctx {
    /// The object store.
    pub store: Arc<dyn Store>,
    /// Ends every stream when the server stops.
    pub shutdown: CancellationToken,
    /// Node heartbeats (read by the node lifecycle controller).
    pub heartbeats: Arc<Heartbeats>,
    /// Pod range allocation for registering nodes.
    pub ipam: Ipam,
    /// Serialises registrations, so two nodes never get the same pod range.
    pub register_lock: Arc<tokio::sync::Mutex<()>>,
    /// How often a healthy node's heartbeat time is written to its stored status.
    pub status_write_interval: Duration,
    /// The largest write request (an object to apply or update), in encoded bytes.
    pub max_request_bytes: usize,
    /// Bounds on concurrent Watch streams.
    pub watch_slots: Arc<slots::WatchSlots>,
    /// Every node's pod range and node IP (heartbeat responses carry them).
    pub pod_ranges: crate::pod_ranges::PodRangesCell,
    /// The whole cluster range (`--cluster-cidr`), sent with them.
    pub cluster_cidr: String,
    /// `--replace-after`: a registering node that fences later is warned about.
    pub replace_after: Duration,
}

/// etcd's request limit, which Kubernetes objects live within: 1.5 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// Refuses a write request larger than `limit` with the API server's 413 message
/// (`Request entity too large: limit is N`), before anything is decoded further or stored.
pub fn check_request_size(request: &impl prost::Message, limit: usize) -> Result<(), Status> {
    if request.encoded_len() > limit {
        return Err(Status::resource_exhausted(format!(
            "{REQUEST_TOO_LARGE}: limit is {limit}"
        )));
    }
    Ok(())
}

/// The start of the message of an oversize request (clients map it to RequestEntityTooLarge).
pub const REQUEST_TOO_LARGE: &str = "Request entity too large";

/// Maps a store error onto the gRPC code clients expect.
pub fn status(e: StoreError) -> Status {
    let msg = e.to_string();
    match e {
        StoreError::NotFound { .. } => Status::not_found(msg),
        StoreError::AlreadyExists { .. } => Status::already_exists(msg),
        StoreError::Conflict { .. } => Status::aborted(msg),
        StoreError::TooOld { .. } | StoreError::FellBehind { .. } => Status::out_of_range(msg),
        StoreError::Invalid(_) => Status::invalid_argument(msg),
        StoreError::Backend(_) => Status::internal(msg),
        StoreError::Closed => Status::unavailable(msg),
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Status {
        status(e)
    }
}

/// Parses the kind a request names (any spelling users type). Internal kinds
/// ([`Kind::served`]) are refused as if they did not exist.
pub fn parse_kind(word: &str) -> Result<Kind, Status> {
    Kind::parse(word).ok_or_else(|| not_served(word))
}

/// The refusal of a kind the generic calls do not serve (unknown or internal).
pub fn not_served(word: &str) -> Status {
    Status::invalid_argument(format!("the server doesn't have a resource type {word:?}"))
}

/// The namespace a request addresses: "default" when empty for namespaced kinds, "" otherwise.
pub fn namespace_for(kind: Kind, namespace: &str) -> String {
    match (kind.namespaced(), namespace.is_empty()) {
        (true, true) => "default".into(),
        (true, false) => namespace.into(),
        (false, _) => String::new(),
    }
}

/// Parses a resourceVersion string ("" and "0" mean none).
pub fn parse_rv(s: &str) -> Result<Option<u64>, Status> {
    match s.trim() {
        "" | "0" => Ok(None),
        s => s.parse().map(Some).map_err(|_| {
            Status::invalid_argument(format!(
                "invalid resourceVersion {s:?}: must be a decimal store revision"
            ))
        }),
    }
}
