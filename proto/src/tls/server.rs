//! TLS servers of the cluster — the control plane's API listener and each agent's
//! NodeAgent endpoint — and the control plane's side of calling an agent.
//!
//! Every connection is TLS 1.3 (rustls, ring). The server's certificate comes from a
//! swappable cell ([`ServerCert`]), so a renewed certificate is used by the next
//! handshake with no restart. A client certificate must chain to the cluster CA; the
//! control plane also accepts callers without one ([`ClientAuth::Optional`], for joining
//! and health), an agent does not ([`ClientAuth::Required`]). Each connection carries the
//! caller's identity, read once from its verified certificate, to every request
//! ([`PeerInfo`] in the request extensions).
//!
//! The control plane dials an agent with [`AgentDialer`]: it trusts only the cluster CA,
//! checks the agent's serving certificate for the node's name, and presents the same
//! certificate its listener serves (from the same cell, so a rotation carries over).

use super::{certs, key, provider, roots, ConnectError, TlsError};
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The organisation every node certificate carries (Kubernetes' node group).
pub const NODES_GROUP: &str = "system:nodes";
/// The common name of the control plane's certificate.
pub const SERVER_CN: &str = "twinset-control-plane";
/// The organisation of the admin certificate.
pub const ADMINS_GROUP: &str = "system:masters";
/// The common name of node `<name>`'s certificates is this prefix and the name.
pub const NODE_CN_PREFIX: &str = "system:node:";

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; more connections wait to be accepted.
const MAX_HANDSHAKES: usize = 256;

/// Who is calling, from the verified client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// No client certificate (only joining and health checks are open to it).
    Anonymous,
    /// An administrator (organisation `system:masters`): the common name.
    Admin(String),
    /// A node (`system:node:<name>`, organisation `system:nodes`): its name.
    Node(String),
    /// The control plane itself (its server certificate, used to dial agents).
    ControlPlane,
    /// A certificate of the cluster CA that is none of the above: its common name.
    Other(String),
}

impl Identity {
    /// The identity of a certificate's subject (common name and organisations).
    pub fn of(cn: &str, orgs: &[String]) -> Identity {
        let has = |o: &str| orgs.iter().any(|x| x == o);
        if let Some(node) = cn.strip_prefix(NODE_CN_PREFIX) {
            if has(NODES_GROUP) && !node.is_empty() {
                return Identity::Node(node.to_string());
            }
        }
        if has(ADMINS_GROUP) {
            return Identity::Admin(cn.to_string());
        }
        if cn == SERVER_CN {
            return Identity::ControlPlane;
        }
        Identity::Other(cn.to_string())
    }

    /// The user name as Kubernetes would say it in a refusal.
    pub fn user(&self) -> String {
        match self {
            Identity::Anonymous => "system:anonymous".into(),
            Identity::Admin(cn) | Identity::Other(cn) => cn.clone(),
            Identity::Node(n) => format!("{NODE_CN_PREFIX}{n}"),
            Identity::ControlPlane => SERVER_CN.into(),
        }
    }
}

/// What every request on a connection knows about its caller.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The remote address.
    pub remote: SocketAddr,
    /// Who it is.
    pub identity: Identity,
    /// The client certificate's public key and expiry (None for an anonymous caller):
    /// checked on every call, so that a deleted node or an expired certificate is
    /// refused even on a connection opened before.
    pub cert: Option<PeerCert>,
}

/// What is checked about a client certificate on every call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCert {
    /// SHA-256 (hex) of its SubjectPublicKeyInfo: what a node's pin is compared with.
    pub key_sha256: String,
    /// Its notAfter, in seconds since the epoch.
    pub not_after: i64,
}

impl PeerInfo {
    /// Why the caller's certificate may not be used at `now` (seconds since the epoch):
    /// it has expired since the connection was opened.
    pub fn expired(&self, now: i64) -> Option<String> {
        let cert = self.cert.as_ref()?;
        (now >= cert.not_after).then(|| {
            let at = chrono::DateTime::from_timestamp(cert.not_after, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_else(|| cert.not_after.to_string());
            format!(
                "the client certificate of \"{}\" expired at {at}",
                self.identity.user()
            )
        })
    }
}

/// The identity in a verified certificate (DER).
pub fn identity_of(der: &[u8]) -> Identity {
    peer_of(der).0
}

/// The identity in a verified certificate (DER), with its key and expiry.
pub fn peer_of(der: &[u8]) -> (Identity, Option<PeerCert>) {
    match crate::certs::facts_der(der) {
        Ok(f) => (
            Identity::of(&f.common_name, &f.organizations),
            Some(PeerCert {
                key_sha256: f.key_sha256,
                not_after: f.not_after,
            }),
        ),
        Err(_) => (Identity::Other(String::new()), None),
    }
}

/// A server's certificate and key, swappable while the server runs.
#[derive(Debug)]
pub struct ServerCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServerCert {
    /// A cell holding the certificate chain and key (PEM).
    pub fn new(cert_pem: &str, key_pem: &str) -> Result<Arc<ServerCert>, TlsError> {
        Ok(Arc::new(ServerCert {
            current: RwLock::new(certified(cert_pem, key_pem)?),
        }))
    }

    /// Uses this certificate and key from the next handshake on.
    pub fn replace(&self, cert_pem: &str, key_pem: &str) -> Result<(), TlsError> {
        let new = certified(cert_pem, key_pem)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = new;
        Ok(())
    }

    fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn certified(cert_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certs(cert_pem, "the server certificate")?;
    let key = key(key_pem, "the server key")?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(TlsError::Config)?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// Hands the cell's current certificate to every handshake, as a server's certificate
/// or as a client's.
#[derive(Debug)]
struct Resolver(Arc<ServerCert>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get())
    }
}

impl ResolvesClientCert for Resolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Whether a server lets callers in without a client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// A client certificate is verified when presented, and callers without one are
    /// let in as [`Identity::Anonymous`] (the control plane: joining, health).
    Optional,
    /// Every caller must present a certificate of the cluster CA (an agent's endpoint).
    Required,
}

/// The control plane's server configuration: [`server_config_for`] with client
/// certificates optional.
pub fn server_config(
    ca_pem: &str,
    cert: Arc<ServerCert>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    server_config_for(ca_pem, cert, ClientAuth::Optional)
}

/// A server configuration: TLS 1.3, h2, the server certificate from `cert`, client
/// certificates verified against the CA and, as `client_auth` says, optional or required.
pub fn server_config_for(
    ca_pem: &str,
    cert: Arc<ServerCert>,
    client_auth: ClientAuth,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider());
    // Besides gRPC (HTTP/2), the control plane serves its REST API and both serve
    // `/metrics`, to HTTP/1.1 clients too (Prometheus among them).
    let alpn: Vec<Vec<u8>> = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let builder = match client_auth {
        ClientAuth::Optional => builder.allow_unauthenticated(),
        ClientAuth::Required => builder,
    };
    let verifier = builder.build().map_err(|e| TlsError::Pem {
        what: "the cluster CA".into(),
        reason: e.to_string(),
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(Resolver(cert)));
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

/// One accepted connection — TLS, or plain text on an explicit loopback debugging
/// listener ([`insecure_incoming`]) — and what its requests know about the caller.
#[derive(Debug)]
pub struct TlsConn {
    inner: Transport,
    info: PeerInfo,
}

#[derive(Debug)]
enum Transport {
    Tls(Box<TlsStream<TcpStream>>),
    Plain(TcpStream),
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

/// Runs `$call` on whichever stream the connection has.
macro_rules! on_stream {
    ($self:ident, $s:ident => $call:expr) => {
        match &mut $self.inner {
            Transport::Tls(t) => {
                let $s = Pin::new(t.as_mut());
                $call
            }
            Transport::Plain(p) => {
                let $s = Pin::new(p);
                $call
            }
        }
    };
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        on_stream!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        on_stream!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        on_stream!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        on_stream!(self, s => s.poll_shutdown(cx))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        on_stream!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Transport::Tls(t) => t.is_write_vectored(),
            Transport::Plain(p) => p.is_write_vectored(),
        }
    }
}

/// The TLS handshake of one accepted connection, and the caller's identity from its
/// verified certificate (anonymous without one).
pub async fn accept(
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    remote: SocketAddr,
) -> std::io::Result<TlsConn> {
    let tls = acceptor.accept(tcp).await?;
    let (identity, cert) = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map_or((Identity::Anonymous, None), |c| peer_of(c));
    Ok(TlsConn {
        inner: Transport::Tls(Box::new(tls)),
        info: PeerInfo {
            remote,
            identity,
            cert,
        },
    })
}

/// The next connection of `listener` (TCP_NODELAY set), or None once `token` fires; a
/// failed accept is logged and the next one awaited.
async fn next_tcp(
    listener: &TcpListener,
    token: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = token.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok((tcp, remote)) => {
                    let _ = tcp.set_nodelay(true);
                    return Some((tcp, remote));
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
        }
    }
}

/// The connections of `listener` that completed a TLS handshake, for tonic's
/// `serve_with_incoming`. Handshakes run beside each other (at most
/// [`MAX_HANDSHAKES`], each within [`HANDSHAKE_TIMEOUT`]) so a slow or plain-text client
/// holds up no one; a failed one is logged and dropped. The accept loop ends with `token`.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    token: CancellationToken,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                _ = token.cancelled() => return,
                p = handshakes.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let Some((tcp, remote)) = next_tcp(&listener, &token).await else {
                return;
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept(&acceptor, tcp, remote)).await
                {
                    Ok(Ok(conn)) => {
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => tracing::info!(%remote, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::info!(%remote, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Plain-text connections of `listener`, each request taken as from `identity`: only
/// for an operator's explicit `--insecure-listen` on a loopback address (the caller
/// checks that), for debugging with tools that cannot speak TLS. The accept loop ends
/// with `token`.
pub fn insecure_incoming(
    listener: TcpListener,
    identity: Identity,
    token: CancellationToken,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let Some((tcp, remote)) = next_tcp(&listener, &token).await else {
                return;
            };
            let conn = TlsConn {
                inner: Transport::Plain(tcp),
                info: PeerInfo {
                    remote,
                    identity: identity.clone(),
                    cert: None,
                },
            };
            if tx.send(Ok(conn)).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// How the control plane calls agents' NodeAgent endpoints: trusting only the cluster
/// CA, requiring each agent's serving certificate to name the node being called, and
/// presenting the certificate of `cert` (the control plane's own, which its listener
/// serves too) as client certificate, in a full handshake each time (no resumption).
#[derive(Clone, Debug)]
pub struct AgentDialer {
    config: Arc<rustls::ClientConfig>,
}

impl AgentDialer {
    /// A dialer trusting `ca_pem` and presenting whatever `cert` holds at each handshake.
    pub fn new(ca_pem: &str, cert: Arc<ServerCert>) -> Result<AgentDialer, TlsError> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots(ca_pem)?)
            .with_client_cert_resolver(Arc::new(Resolver(cert)));
        config.alpn_protocols = vec![b"h2".to_vec()];
        // Every connection does a full handshake with the certificate the cell holds
        // then: a resumed session would carry the certificate it began with.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(AgentDialer {
            config: Arc::new(config),
        })
    }

    /// A channel to node `node`'s agent at `address` (`IP:PORT`), connected now (within
    /// `timeout`): the agent's certificate must be the cluster CA's serving certificate
    /// for the DNS name `node`.
    pub async fn connect(
        &self,
        node: &str,
        address: &str,
        timeout: Duration,
    ) -> Result<Channel, ConnectError> {
        let (endpoint, _, authority) = super::endpoint(address)?;
        let connector = super::connector(self.config.clone(), node.to_string(), authority)?;
        endpoint
            .connect_timeout(timeout)
            .connect_with_connector(connector)
            .await
            .map_err(ConnectError::Transport)
    }
}
