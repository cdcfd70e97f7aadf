//! The cluster DNS server: stable names for StatefulSet pods and their Services.
//!
//! `<pod>.<service>.<namespace>.svc.<domain>` answers with the pod's IP while it is Running
//! and Ready; `<service>.<namespace>.svc.<domain>` with every such pod of the Service
//! ([`records`] has the full rules). The records live in memory, rebuilt from the store's
//! Services and Pods as they change ([`sync`]), and are served over UDP and TCP by a
//! hickory-server [`Server`](hickory_server::Server) with our own request handler
//! ([`server`]). Answers are authoritative with a 5 s TTL; names outside the domain get
//! REFUSED (no recursion), so a stub resolver moves on to its next nameserver.
//!
//! [`serve`] is the whole thing; [`DnsServer`] splits it into bind and run for callers that
//! need the bound address first (port 0).

pub mod records;
mod server;
mod sync;

use crate::store::Store;
use records::Zone;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use records::{InvalidDomain, TTL};

/// How long an idle TCP connection may stay open between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// How many responses may wait to be written on one TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;
/// With port 0, how many UDP ports to try before giving up finding one free for TCP too.
const PORT_TRIES: usize = 16;

/// What stops the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cluster domain is not a DNS name.
    #[error(transparent)]
    Domain(#[from] InvalidDomain),
    /// The listen address could not be bound (port 53 needs root or CAP_NET_BIND_SERVICE).
    #[error("cannot serve DNS on {protocol} {addr}: {source}")]
    Bind {
        /// "UDP" or "TCP".
        protocol: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The hickory server stopped with an error (a socket failed).
    #[error("DNS server: {0}")]
    Server(#[from] hickory_server::net::NetError),
}

/// A DNS server bound to its UDP socket and TCP listener (the same port) with its records
/// loaded, ready to [`run`](DnsServer::run).
pub struct DnsServer {
    udp: UdpSocket,
    tcp: TcpListener,
    addr: SocketAddr,
    store: Arc<dyn Store>,
    zone: sync::SharedZone,
    primed: sync::Primed,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl DnsServer {
    /// Binds UDP and TCP on `listen` (port 0: one free port for both) and loads the
    /// records for `domain` ("cluster.local") from the store's Services and Pods.
    pub async fn bind(
        store: Arc<dyn Store>,
        listen: SocketAddr,
        domain: &str,
    ) -> Result<DnsServer, Error> {
        let zone = Arc::new(RwLock::new(Zone::new(domain)?));
        let (udp, tcp, addr) = bind_both(listen).await?;
        let primed = sync::prime(&*store, &zone);
        Ok(DnsServer {
            udp,
            tcp,
            addr,
            store,
            zone,
            primed,
        })
    }

    /// The address both sockets are bound to (the actual port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers queries, following the store's changes, until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let addr = self.addr;
        let domain = self.zone.read().unwrap_or_else(|e| e.into_inner()).domain();
        let span = tracing::info_span!("dns", %addr, %domain);
        async move {
            let follower_token = shutdown.child_token();
            let follower = tokio::spawn(
                sync::follow(
                    self.store.clone(),
                    self.zone.clone(),
                    self.primed,
                    follower_token.clone(),
                )
                .in_current_span(),
            );
            let mut server = hickory_server::Server::new(server::Handler::new(self.zone));
            server.register_socket(self.udp);
            server.register_listener(self.tcp, TCP_IDLE, TCP_RESPONSE_BUFFER);
            tracing::info!("DNS server listening (UDP and TCP)");
            let ended = tokio::select! {
                r = server.block_until_done() => Some(r),
                _ = shutdown.cancelled() => None,
            };
            let result = match ended {
                Some(r) => r,
                None => server.shutdown_gracefully().await,
            };
            follower_token.cancel();
            if let Err(e) = follower.await {
                tracing::warn!(error = %e, "dns: record follower ended abnormally");
            }
            tracing::info!("DNS server stopped");
            result.map_err(Error::from)
        }
        .instrument(span)
        .await
    }
}

/// Serves the cluster DNS for `domain` ("cluster.local") on UDP and TCP `listen` until
/// `shutdown` is cancelled. The records follow the store's Pods and Services.
pub async fn serve(
    store: Arc<dyn Store>,
    listen: SocketAddr,
    domain: &str,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    DnsServer::bind(store, listen, domain)
        .await?
        .run(shutdown)
        .await
}

/// Binds UDP, then TCP on the same port; with port 0, retries when the TCP side of the
/// port UDP got is taken.
async fn bind_both(listen: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr), Error> {
    let bind_err = |protocol, addr| {
        move |source| Error::Bind {
            protocol,
            addr,
            source,
        }
    };
    let mut tries = 0;
    loop {
        let udp = UdpSocket::bind(listen)
            .await
            .map_err(bind_err("UDP", listen))?;
        let addr = udp.local_addr().map_err(bind_err("UDP", listen))?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp, addr)),
            Err(e)
                if listen.port() == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && tries < PORT_TRIES =>
            {
                tries += 1;
            }
            Err(e) => return Err(bind_err("TCP", addr)(e)),
        }
    }
}
