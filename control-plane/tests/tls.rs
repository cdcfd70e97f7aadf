//! The TLS listener and the authorization wrapper in process, on loopback: an admin
//! certificate is admitted, no certificate is UNAUTHENTICATED, a node's certificate is
//! PERMISSION_DENIED, a plain-text client gets no answer, and a replaced server
//! certificate is served from the next handshake on.

use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use twinset_control_plane::api::authz::{Audience, Authorized};
use twinset_control_plane::pki::ClusterCa;
use twinset_control_plane::tls::{incoming, server_config, ServerCert};
use twinset_proto::tls::{connect, ClientCredentials};

const DAY: Duration = Duration::from_secs(24 * 3600);

struct Server {
    addr: String,
    ca: ClusterCa,
    cert: Arc<ServerCert>,
    token: CancellationToken,
    _dir: tempfile::TempDir,
}

/// A server whose health service admits administrators only.
async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::load_or_create(&dir.path().join("pki")).unwrap();
    let issued = ca
        .issue_server(&["localhost".into(), "127.0.0.1".into()], DAY)
        .unwrap();
    let cert = ServerCert::new(&issued.cert_pem, &issued.key_pem).unwrap();
    let config = server_config(ca.cert_pem(), cert.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let token = CancellationToken::new();
    let (_, health) = tonic_health::server::health_reporter();
    let conns = incoming(listener, config, token.clone());
    let stop = token.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(Authorized::new(Audience::Admins, health))
            .serve_with_incoming_shutdown(conns, stop.cancelled_owned())
            .await
    });
    Server {
        addr,
        ca,
        cert,
        token,
        _dir: dir,
    }
}

fn admin(s: &Server) -> ClientCredentials {
    let a = s.ca.issue_admin(DAY).unwrap();
    ClientCredentials {
        ca_pem: s.ca.cert_pem().to_string(),
        identity: Some((a.cert_pem, a.key_pem)),
    }
}

fn node(s: &Server, name: &str) -> ClientCredentials {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .unwrap();
    let cert = s.ca.sign_node_csr(csr.der(), name, DAY).unwrap();
    ClientCredentials {
        ca_pem: s.ca.cert_pem().to_string(),
        identity: Some((cert.cert_pem, key.serialize_pem())),
    }
}

async fn check(s: &Server, creds: &ClientCredentials) -> Result<(), tonic::Status> {
    let channel = connect(&format!("https://{}", s.addr), creds)
        .await
        .expect("TLS connection");
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(drop)
}

#[tokio::test]
async fn callers_are_told_apart_by_their_certificates() {
    let s = start().await;
    check(&s, &admin(&s)).await.expect("an admin is admitted");

    let anonymous = ClientCredentials {
        ca_pem: s.ca.cert_pem().to_string(),
        identity: None,
    };
    let e = check(&s, &anonymous).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    let e = check(&s, &node(&s, "node1")).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert_eq!(
        e.message(),
        "User \"system:node:node1\" cannot call grpc.health.v1.Health/Check"
    );

    // A certificate of another CA is refused in the handshake.
    let dir = tempfile::tempdir().unwrap();
    let other = ClusterCa::load_or_create(dir.path()).unwrap();
    let stranger = other.issue_admin(DAY).unwrap();
    let forged = ClientCredentials {
        ca_pem: s.ca.cert_pem().to_string(),
        identity: Some((stranger.cert_pem, stranger.key_pem)),
    };
    let refused = match connect(&format!("https://{}", s.addr), &forged).await {
        Err(_) => true,
        Ok(ch) => HealthClient::new(ch)
            .check(HealthCheckRequest::default())
            .await
            .is_err(),
    };
    assert!(refused, "a certificate of another CA must not be admitted");
    s.token.cancel();
}

#[tokio::test]
async fn a_plain_text_client_gets_no_answer() {
    let s = start().await;
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", s.addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    let answered = match plain.connect().await {
        Err(_) => false,
        Ok(ch) => HealthClient::new(ch)
            .check(HealthCheckRequest::default())
            .await
            .is_ok(),
    };
    assert!(!answered, "plain text must not be served");
    s.token.cancel();
}

/// The certificate the server presents to a new connection (DER).
async fn served_cert(s: &Server) -> Vec<u8> {
    let config = admin(s).config().unwrap();
    let tcp = tokio::net::TcpStream::connect(&s.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn a_replaced_server_certificate_is_served_from_the_next_handshake() {
    let s = start().await;
    let before = served_cert(&s).await;
    let renewed =
        s.ca.issue_server(&["localhost".into(), "127.0.0.1".into()], DAY)
            .unwrap();
    s.cert.replace(&renewed.cert_pem, &renewed.key_pem).unwrap();
    let after = served_cert(&s).await;
    assert_ne!(before, after);
    let want = twinset_proto::tls::certs(&renewed.cert_pem, "renewed").unwrap();
    assert_eq!(after, want[0].to_vec());
    check(&s, &admin(&s)).await.expect("still serving");
    s.token.cancel();
}
