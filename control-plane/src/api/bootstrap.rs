//! The `twinset.v1.Bootstrap` service: what a new node calls before it has a
//! certificate. CaCertificate hands out the CA (the caller checks it against its token's
//! hash); Join checks the token (its CA hash, secret, expiry, uses, node), the node
//! name's pinned key, signs the CSR's public key as `system:node:<name>` (a client
//! certificate, and a serving certificate for the agent's endpoint) and records the pin.
//! Every refusal is logged with the token id and node name, and nothing is stored for a
//! refused join.

use crate::join::issued;
use crate::join::pin::{self, Pin};
use crate::join::tokens::{self, TokenStoreError};
use crate::pki::{ClusterCa, NodeCerts};
use crate::store::{create_or_update, Change, Key, Store};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tonic::{Request, Response, Status};
use twinset_proto::token::Token;
use twinset_proto::v1::bootstrap_server::Bootstrap;
use twinset_proto::v1::{
    CaCertificateRequest, CaCertificateResponse, JoinRequest, JoinResponse, Object,
};
use twinset_proto::Kind;

/// How long a node certificate is valid unless configured (`--node-cert-ttl`).
pub const DEFAULT_NODE_CERT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The largest CSR accepted, in bytes (a P-256 request is about 300).
pub const MAX_CSR_BYTES: usize = 16 * 1024;

/// The clock the service reads (tests move it).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The Bootstrap service.
pub struct BootstrapService {
    store: Arc<dyn Store>,
    ca: Arc<ClusterCa>,
    node_cert_ttl: Duration,
    now: Clock,
}

impl BootstrapService {
    /// A service signing node certificates valid for `node_cert_ttl` with `ca`.
    pub fn new(store: Arc<dyn Store>, ca: Arc<ClusterCa>, node_cert_ttl: Duration) -> Self {
        BootstrapService {
            store,
            ca,
            node_cert_ttl,
            now: Arc::new(SystemTime::now),
        }
    }

    /// The same service reading `clock` for token expiry.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.now = clock;
        self
    }

    /// Join, as the RPC does it; each refusal is logged.
    pub async fn join_node(&self, r: JoinRequest) -> Result<JoinResponse, Status> {
        // What the log may name: the id only once the token parses (never the secret).
        let id = Token::parse(&r.token)
            .map(|t| t.id().to_string())
            .unwrap_or_else(|_| "<unparsable>".into());
        // The caller is not authenticated yet: its node name is logged quoted and bounded.
        let node = shown(&r.node_name);
        match self.try_join(&r).await {
            Ok(resp) => {
                tracing::info!(token = id, node, "node joined");
                Ok(resp)
            }
            Err(status) => {
                tracing::warn!(
                    token = id,
                    node,
                    code = ?status.code(),
                    reason = status.message(),
                    "join refused"
                );
                Err(status)
            }
        }
    }

    async fn try_join(&self, r: &JoinRequest) -> Result<JoinResponse, Status> {
        let store = &*self.store;
        let token = Token::parse(&r.token).map_err(|e| Status::unauthenticated(e.to_string()))?;
        if !twinset_proto::token::hashes_equal(token.ca_hash(), &self.ca.hash()) {
            return Err(Status::unauthenticated(format!(
                "token {}: the token was made for another cluster CA",
                token.id()
            )));
        }
        let node = r.node_name.as_str();
        if !twinset_proto::validate::is_dns1123_subdomain(node) {
            return Err(Status::invalid_argument(format!(
                "node name {} is invalid: a lowercase RFC 1123 subdomain is required",
                shown(node)
            )));
        }
        let key_hash = csr_key(&r.csr_der)?;
        let now = (self.now)();
        let (id, secret_hash) = (token.id(), token.secret_hash());

        // Read-only checks first, so a refused join writes nothing.
        let record = tokens::get(store, id).map_err(tokens_status)?;
        tokens::decide_join(id, record.as_ref(), &secret_hash, node, now)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        pin_allowed(store, node, &key_hash)?;
        let certs = sign_node(&self.ca, &r.csr_der, node, self.node_cert_ttl)?;

        // The writes: a use of the token (compare-and-swap), then the pin.
        tokens::consume(store, id, &secret_hash, node, now)
            .await
            .map_err(tokens_status)?;
        if let Err(refused) = record_pin(store, node, &key_hash).await {
            // Another joiner took the name between the check and the write.
            if let Err(e) = tokens::refund(store, id).await {
                tracing::warn!(token = id, node, error = %e, "cannot give back the token's use");
            }
            return Err(refused);
        }
        if let Err(e) = issued::record(store, node, &certs).await {
            // The node has joined; only `certs check` misses these certificates until they
            // is renewed.
            tracing::warn!(node, error = %e, "cannot record the node certificate");
        }
        Ok(JoinResponse {
            certificate_pem: certs.client.cert_pem,
            ca_pem: self.ca.cert_pem().to_string(),
            serving_certificate_pem: certs.serving.cert_pem,
        })
    }
}

/// The SHA-256 of the public key of a node's CSR, once its size and self-signature are
/// checked: the first thing a join and a renewal read.
pub fn csr_key(csr_der: &[u8]) -> Result<String, Status> {
    if csr_der.len() > MAX_CSR_BYTES {
        return Err(Status::invalid_argument(format!(
            "the certificate signing request is {} bytes; at most {MAX_CSR_BYTES} are accepted",
            csr_der.len()
        )));
    }
    pin::csr_key_sha256(csr_der).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// A node's two certificates for the key of `csr_der` (join and renewal).
pub fn sign_node(
    ca: &ClusterCa,
    csr_der: &[u8],
    node: &str,
    ttl: Duration,
) -> Result<NodeCerts, Status> {
    ca.sign_node(csr_der, node, ttl).map_err(|e| match e {
        crate::pki::Error::Csr(_) => Status::invalid_argument(e.to_string()),
        e => Status::internal(e.to_string()),
    })
}

/// A name from an unauthenticated caller as logs and messages show it: quoted, escaped
/// and cut to the longest valid node name.
fn shown(name: &str) -> String {
    const MAX: usize = 253;
    match name.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}…", &name[..cut]),
        None => format!("{name:?}"),
    }
}

fn tokens_status(e: TokenStoreError) -> Status {
    super::tokens::token_status(e)
}

/// Whether `node` may be bound to `key_hash`, as stored now.
fn pin_allowed(store: &dyn Store, node: &str, key_hash: &str) -> Result<(), Status> {
    let existing = store.get(Kind::Node, "", node).and_then(Object::into_node);
    let live = existing.as_ref().is_some_and(pin::is_live);
    match pin::decide_pin(existing.as_ref(), key_hash, live) {
        Pin::New | Pin::Same => Ok(()),
        Pin::Refused(msg) => Err(Status::already_exists(msg)),
    }
}

/// Binds `node` to `key_hash`: creates the node (pinned, not ready) when missing, else
/// pins it, deciding again on the node as stored at the write.
async fn record_pin(store: &dyn Store, node: &str, key_hash: &str) -> Result<(), Status> {
    let key = Key::new(Kind::Node, "", node);
    let now = twinset_proto::time::now();
    create_or_update(
        store,
        &key,
        || {
            let mut obj = Object::from(pin::joined_node(node, key_hash, &now));
            obj.set_type_meta();
            Ok::<_, Status>(obj)
        },
        |obj| {
            let Some(n) = obj.as_node_mut() else {
                return Err(Status::internal(format!("stored {node} is not a node")));
            };
            match pin::decide_pin(Some(n), key_hash, pin::is_live(n)) {
                Pin::Same => Ok(Change::Keep),
                Pin::New => {
                    pin::pin(n, key_hash);
                    Ok(Change::Write)
                }
                Pin::Refused(msg) => Err(Status::already_exists(msg)),
            }
        },
    )
    .await
    .map(|_| ())
}

#[tonic::async_trait]
impl Bootstrap for BootstrapService {
    async fn ca_certificate(
        &self,
        _request: Request<CaCertificateRequest>,
    ) -> Result<Response<CaCertificateResponse>, Status> {
        Ok(Response::new(CaCertificateResponse {
            ca_pem: self.ca.cert_pem().to_string(),
        }))
    }

    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        self.join_node(request.into_inner())
            .await
            .map(Response::new)
    }
}
