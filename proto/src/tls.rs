//! TLS for every connection of the API, with rustls (ring provider) only: the client
//! side every caller shares (the CLI, the agents, the control plane dialling agents, the
//! tests) and the PEM helpers the servers use. A client trusts exactly the cluster CA
//! and, when it has one, presents its own certificate; HTTP/2 is negotiated by ALPN.

pub mod server;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

/// What can go wrong setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM certificate or key could not be read.
    #[error("{what}: {reason}")]
    Pem {
        /// Which file or field.
        what: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The server address is not usable.
    #[error("invalid server address {0:?}")]
    Address(String),
}

/// The ring provider, the only one this project uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM text.
pub fn certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            what: what.to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: what.to_string(),
            reason: "no certificate in it".into(),
        });
    }
    Ok(certs)
}

/// The private key in a PEM text.
pub fn key(pem: &str, what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

/// A root store holding only the cluster CA.
pub fn roots(ca_pem: &str) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca_pem, "the cluster CA")? {
        roots.add(c)?;
    }
    Ok(roots)
}

/// What a client needs: the CA it trusts and, optionally, its own certificate and key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientCredentials {
    /// The cluster CA (PEM).
    pub ca_pem: String,
    /// The client's certificate (PEM) and key (PEM), when it has them.
    pub identity: Option<(String, String)>,
}

impl ClientCredentials {
    /// The rustls client configuration: trusts only the CA, presents the identity, speaks h2.
    pub fn config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots(&self.ca_pem)?);
        let mut config = match &self.identity {
            Some((cert, key_pem)) => builder.with_client_auth_cert(
                certs(cert, "the client certificate")?,
                key(key_pem, "the client key")?,
            )?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// `https://HOST:PORT` (or `HOST:PORT`) → (host, `HOST:PORT`).
fn split(server: &str) -> Result<(String, String), TlsError> {
    let uri: Uri = crate::endpoint(server)
        .parse()
        .map_err(|_| TlsError::Address(server.to_string()))?;
    let host = uri
        .host()
        .ok_or_else(|| TlsError::Address(server.to_string()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok((host, authority))
}

/// An endpoint for `server` whose connections are made by [`connector`]: tonic itself
/// sees plain HTTP/2 (the scheme it is given is `http`), the connector does TLS.
fn endpoint(server: &str) -> Result<(Endpoint, String, String), TlsError> {
    let (host, authority) = split(server)?;
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|_| TlsError::Address(server.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        // A dead peer is noticed within seconds, also on a stream that is only read.
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    Ok((endpoint, host, authority))
}

type Io = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Dials `authority` and does the TLS handshake, checking the server's certificate
/// against `host` (a DNS name or an IP address, which the certificate must name).
fn connector(
    config: Arc<rustls::ClientConfig>,
    host: String,
    authority: String,
) -> Result<
    impl tower::Service<Uri, Response = Io, Error = std::io::Error, Future = impl Send + 'static>
        + Clone
        + Send
        + 'static,
    TlsError,
> {
    let name = ServerName::try_from(host.clone()).map_err(|_| TlsError::Address(host))?;
    Ok(tower::service_fn(move |_: Uri| {
        let (config, name, authority) = (config.clone(), name.clone(), authority.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect(&authority).await?;
            tcp.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    }))
}

/// A channel to `server` over TLS with `creds`, connected now.
pub async fn connect(server: &str, creds: &ClientCredentials) -> Result<Channel, ConnectError> {
    let (endpoint, host, authority) = endpoint(server)?;
    let connector = connector(creds.config()?, host, authority)?;
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(ConnectError::Transport)
}

/// A channel to `address` (`HOST:PORT`) over TLS with `creds`, connected now, that
/// checks the server's certificate for `server_name` rather than the host dialled: how
/// a client reaches an agent's endpoint, whose certificate names its node.
pub async fn connect_as(
    address: &str,
    server_name: &str,
    creds: &ClientCredentials,
) -> Result<Channel, ConnectError> {
    let (endpoint, _, authority) = endpoint(address)?;
    let connector = connector(creds.config()?, server_name.to_string(), authority)?;
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(ConnectError::Transport)
}

/// A channel to `server` over TLS with `creds` that connects on first use (and again
/// after a failure).
pub fn connect_lazy(server: &str, creds: &ClientCredentials) -> Result<Channel, TlsError> {
    let (endpoint, host, authority) = endpoint(server)?;
    let connector = connector(creds.config()?, host, authority)?;
    Ok(endpoint.connect_with_connector_lazy(connector))
}

/// A channel to `server` that accepts whatever certificate the server presents: only for
/// fetching the CA before joining, whose hash the caller then checks against the join
/// token before it trusts the CA or sends anything secret.
pub async fn connect_unverified(server: &str) -> Result<Channel, ConnectError> {
    let (endpoint, host, authority) = endpoint(server)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::from)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider())))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = connector(Arc::new(config), host, authority)?;
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(ConnectError::Transport)
}

/// Accepts any server certificate (the handshake's signatures are still checked).
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TLS setup was refused before dialling.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Dialling or the handshake failed.
    #[error("{0}")]
    Transport(tonic::transport::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_split_into_host_and_authority() {
        assert_eq!(
            split("https://127.0.0.1:6443").unwrap(),
            ("127.0.0.1".into(), "127.0.0.1:6443".into())
        );
        assert_eq!(
            split("localhost:7000").unwrap(),
            ("localhost".into(), "localhost:7000".into())
        );
        assert_eq!(
            split("https://[::1]:6443").unwrap(),
            ("::1".into(), "[::1]:6443".into())
        );
    }

    #[test]
    fn bad_pem_is_refused_naming_what() {
        let e = ClientCredentials {
            ca_pem: "not a certificate".into(),
            identity: None,
        }
        .config()
        .unwrap_err();
        assert!(e.to_string().starts_with("the cluster CA:"), "{e}");
    }
}
