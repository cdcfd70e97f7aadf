//! The agent's join against the real Bootstrap service over gRPC on loopback: the
//! CA fetch, the hash check, the CSR, the certificate for the agent's own key; a
//! token for another CA is refused before any certificate request is sent, and a
//! second machine with the same name is refused with the control plane's message.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use twinset_control_plane::api::bootstrap::{BootstrapService, DEFAULT_NODE_CERT_TTL};
use twinset_control_plane::join::tokens::{self, NewToken};
use twinset_control_plane::pki::ClusterCa;
use twinset_control_plane::store::memory::MemoryStore;
use twinset_control_plane::store::Store;
use twinset_node_agent::join::{join, pki_dir, JoinError, NodeCredentials, Trust};
use twinset_proto::token::{sha256_hex, Token};
use twinset_proto::v1::bootstrap_server::BootstrapServer;
use twinset_proto::Kind;

struct ControlPlane {
    url: String,
    store: Arc<dyn Store>,
    ca: Arc<ClusterCa>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn control_plane() -> ControlPlane {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(ClusterCa::load_or_create(&dir.path().join("pki")).unwrap());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(100));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let service = BootstrapService::new(store.clone(), ca.clone(), DEFAULT_NODE_CERT_TTL);
    tokio::spawn(
        Server::builder()
            .add_service(BootstrapServer::new(service))
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener),
                stop.clone().cancelled_owned(),
            ),
    );
    ControlPlane {
        url,
        store,
        ca,
        stop,
        _dir: dir,
    }
}

/// A channel maker that records what each channel was asked to trust (plain text
/// here: the TLS channels are the transport's business).
fn connector(
    url: String,
    asked: Arc<Mutex<Vec<Trust>>>,
) -> impl FnMut(
    Trust,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Channel, JoinError>> + Send>,
> {
    move |trust| {
        asked.lock().unwrap().push(trust);
        let url = url.clone();
        Box::pin(async move {
            Endpoint::from_shared(url)
                .unwrap()
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await
                .map_err(|e| JoinError::Connect(e.to_string()))
        })
    }
}

async fn token(cp: &ControlPlane, ca_hash: &str, uses: u32) -> Token {
    let new = NewToken {
        uses: Some(uses),
        ..Default::default()
    };
    tokens::create(&*cp.store, ca_hash, &new, SystemTime::now())
        .await
        .unwrap()
        .0
}

#[tokio::test]
async fn an_agent_joins_and_keeps_its_credentials() {
    let cp = control_plane().await;
    let t = token(&cp, &cp.ca.hash(), 2).await;
    let asked = Arc::new(Mutex::new(Vec::new()));
    let creds = join(connector(cp.url.clone(), asked.clone()), &t, "node1")
        .await
        .unwrap();
    assert_eq!(
        *asked.lock().unwrap(),
        [Trust::Unverified, Trust::Ca(cp.ca.cert_pem().to_string())],
        "the CA fetch trusts nothing yet, the join trusts the checked CA"
    );
    assert_eq!(creds.ca_pem, cp.ca.cert_pem());
    assert_eq!(creds.node_name().unwrap(), "node1");
    creds.check("node1").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let pki = pki_dir(dir.path());
    creds.save(&pki).unwrap();
    assert_eq!(NodeCredentials::load(&pki).unwrap(), Some(creds));

    // Another machine under the same name: refused with the control plane's words.
    let err = join(connector(cp.url.clone(), Arc::default()), &t, "node1")
        .await
        .unwrap_err();
    let JoinError::Refused { code, message, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(*code, tonic::Code::AlreadyExists);
    assert!(
        message.contains("delete it first (twinset delete node node1)"),
        "{message}"
    );
}

#[tokio::test]
async fn a_token_for_another_ca_sends_no_certificate_request() {
    let cp = control_plane().await;
    let t = token(&cp, &sha256_hex(b"another cluster's CA"), 1).await;
    let rev = cp.store.current_revision();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let err = join(connector(cp.url.clone(), asked.clone()), &t, "node1")
        .await
        .unwrap_err();
    assert!(matches!(err, JoinError::CaMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains("does not match the token's")
            && err
                .to_string()
                .contains("not sending a certificate request"),
        "{err}"
    );
    assert_eq!(
        *asked.lock().unwrap(),
        [Trust::Unverified],
        "no second call"
    );
    assert_eq!(cp.store.current_revision(), rev, "nothing stored");
    assert!(cp.store.get(Kind::Node, "", "node1").is_none());
}
